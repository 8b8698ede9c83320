-- An answer is marked as being sent (database clock) just before its
-- gateway is called and unmarked when the attempt's outcome is written. A
-- daemon that claims an answer still marked (its sender died mid-send)
-- does not send it again: the answer went out at most once, and the item
-- shows that it may not have (src/replies.rs).
ALTER TABLE replies ADD COLUMN sending_since TEXT;

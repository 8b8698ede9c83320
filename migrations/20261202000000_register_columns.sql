-- The register's own columns (issue 19): the case (lietas indekss) an item is
-- filed under, from the classification scheme, and the submission's formal
-- status (e_signed, authenticated_by_state_portal, signed_paper,
-- unsigned_email, sms, form, ...). Both are set at registration; the case can
-- be changed by the records officer (audit-logged).
ALTER TABLE items ADD COLUMN case_code TEXT;
ALTER TABLE items ADD COLUMN formal_status TEXT;
CREATE INDEX items_case_registered ON items (case_code, registered_at);
CREATE INDEX items_formal_status_registered ON items (formal_status, registered_at);

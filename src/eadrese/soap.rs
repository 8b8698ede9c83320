//! SOAP 1.2 envelopes of the DIV UnifiedService: the namespaces, the
//! action of each operation, and reading answers (the operation's output
//! element, or the fault's reason).

pub(crate) const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
pub(crate) const NS_WSA: &str = "http://www.w3.org/2005/08/addressing";
/// The UnifiedService's operation inputs and outputs.
pub(crate) const NS_UUI: &str = "http://vraa.gov.lv/xmlschemas/div/uui/2011/11";
/// The DIV envelope (`SenderDocument`, `ServerTransportMetadata` …).
pub(crate) const NS_DIV: &str = "http://ivis.eps.gov.lv/XMLSchemas/100001/DIV/v1-0";
const ACTION_BASE: &str = "http://vraa.gov.lv/div/uui/2011/11/UnifiedServiceInterface/";

/// The operations Pietura uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    CertValidate,
    GetMessageList,
    GetMessage,
    GetAttachmentSection,
    ConfirmMessage,
    SendMessage,
    GetMessageServerConfirmation,
    GetInitialAddresseeRecordList,
    GetChangedAddresseeRecordList,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::CertValidate => "CertValidate",
            Operation::GetMessageList => "GetMessageList",
            Operation::GetMessage => "GetMessage",
            Operation::GetAttachmentSection => "GetAttachmentSection",
            Operation::ConfirmMessage => "ConfirmMessage",
            Operation::SendMessage => "SendMessage",
            Operation::GetMessageServerConfirmation => "GetMessageServerConfirmation",
            Operation::GetInitialAddresseeRecordList => "GetInitialAddresseeRecordList",
            Operation::GetChangedAddresseeRecordList => "GetChangedAddresseeRecordList",
        }
    }

    /// The SOAP action (also `wsa:Action`).
    pub fn action(self) -> String {
        format!("{ACTION_BASE}{}", self.name())
    }
}

/// A whole request: `header` (the signed WS-Security header) and the
/// operation's input element with `input` inside.
pub(crate) fn envelope(header: &str, op: Operation, input: &str) -> String {
    format!(
        "<s:Envelope xmlns:s=\"{NS_SOAP}\"><s:Header>{header}</s:Header><s:Body>\
         <{name}Input xmlns=\"{NS_UUI}\">{input}</{name}Input></s:Body></s:Envelope>",
        name = op.name()
    )
}

/// What an answer said: the output element, or a fault.
pub(crate) enum Answer<'a, 'input> {
    Output(roxmltree::Node<'a, 'input>),
    Fault(String),
}

/// Reads an answer's body.
pub(crate) fn answer<'a, 'input>(
    doc: &'a roxmltree::Document<'input>,
) -> Option<Answer<'a, 'input>> {
    let body = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name((NS_SOAP, "Body")))?;
    let first = body.children().find(|n| n.is_element())?;
    if first.has_tag_name((NS_SOAP, "Fault")) {
        let reason = first
            .descendants()
            .find(|n| n.has_tag_name((NS_SOAP, "Text")))
            .and_then(|n| n.text())
            .unwrap_or("a fault without a reason")
            .to_string();
        return Some(Answer::Fault(reason));
    }
    Some(Answer::Output(first))
}

/// The text of the first descendant `local` of `node` (any namespace).
pub(crate) fn text_of<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    local: &str,
) -> Option<&'a str> {
    node.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == local)
        .and_then(|n| n.text())
}

/// Every descendant element named `local`.
pub(crate) fn all<'a, 'input, 'name>(
    node: roxmltree::Node<'a, 'input>,
    local: &'name str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> + use<'a, 'input, 'name> {
    node.descendants()
        .filter(move |n| n.is_element() && n.tag_name().name() == local)
}

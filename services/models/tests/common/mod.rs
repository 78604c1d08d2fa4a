//! Fixture types shared by the model parity tests.

use folio_models::chat::ChatMessage;
use folio_models::llm::Llm;
use serde::Deserialize;

/// A chat message as the reference scripts write it.
#[derive(Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A conversation rendered by transformers' `apply_chat_template`, and its token ids.
#[derive(Deserialize)]
pub struct ChatCase {
    pub name: String,
    pub messages: Vec<Message>,
    pub add_generation_prompt: bool,
    pub rendered: String,
    pub input_ids: Vec<u32>,
}

/// Renders every case with `llm`'s chat template: the text byte for byte, then its ids.
pub fn check_chat_cases(llm: &Llm, cases: &[ChatCase]) -> anyhow::Result<()> {
    for case in cases {
        let messages: Vec<ChatMessage> = case
            .messages
            .iter()
            .map(|m| ChatMessage::new(&m.role, m.content.clone()))
            .collect();
        let rendered = llm.render(&messages, case.add_generation_prompt)?;
        assert_eq!(rendered, case.rendered, "{}", case.name);
        assert_eq!(llm.encode(&rendered)?, case.input_ids, "{}: ids", case.name);
    }
    Ok(())
}

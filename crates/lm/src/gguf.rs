//! Opening a GGUF file: its metadata, and its tensors one by one, with clear errors.
//!
//! Candle's parser reads the header; this file adds the checks it leaves out: every tensor's
//! offset is a multiple of the file's alignment (`general.alignment`, 32 by default), as the
//! format requires. A misaligned offset means a corrupt or badly written file, and reading it
//! anyway yields weights shifted by a few bytes: garbage that loads silently.

use crate::error::candle_message;
use crate::{LmError, Result};
use candle_core::Device;
use candle_core::quantized::QTensor;
use candle_core::quantized::gguf_file::{Content, Value};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// The alignment of tensor data when `general.alignment` is absent (GGUF's default).
const DEFAULT_ALIGNMENT: u64 = 32;

/// An open GGUF file.
pub struct GgufFile {
    path: PathBuf,
    reader: BufReader<File>,
    content: Content,
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| LmError::Io {
            path: path.clone(),
            source,
        })?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| LmError::InvalidGguf {
            path: path.clone(),
            reason: candle_message(&e),
        })?;
        let file = Self {
            path,
            reader,
            content,
        };
        file.check_alignment()?;
        Ok(file)
    }

    /// Every tensor starts at a multiple of the file's alignment.
    fn check_alignment(&self) -> Result<()> {
        let alignment = match self.content.metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(value) => match value {
                Value::U8(v) => u64::from(*v),
                Value::U16(v) => u64::from(*v),
                Value::U32(v) => u64::from(*v),
                Value::U64(v) => *v,
                Value::I8(v) => u64::try_from(*v).unwrap_or(0),
                Value::I16(v) => u64::try_from(*v).unwrap_or(0),
                Value::I32(v) => u64::try_from(*v).unwrap_or(0),
                _ => 0,
            },
        };
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(self.invalid(format!(
                "general.alignment must be a power of two, not {:?}",
                self.content.metadata.get("general.alignment")
            )));
        }
        if !self.content.tensor_data_offset.is_multiple_of(alignment) {
            return Err(self.invalid(format!(
                "the tensor data starts at byte {}, not a multiple of the alignment {alignment}",
                self.content.tensor_data_offset
            )));
        }
        let mut infos: Vec<_> = self.content.tensor_infos.iter().collect();
        infos.sort_by_key(|(_, info)| info.offset);
        for (name, info) in infos {
            if !info.offset.is_multiple_of(alignment) {
                return Err(self.invalid(format!(
                    "tensor `{name}` starts at offset {}, not a multiple of the file's \
                     alignment {alignment}",
                    info.offset
                )));
            }
        }
        Ok(())
    }

    pub fn content(&self) -> &Content {
        &self.content
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Reads one tensor; a missing or truncated tensor is an [`LmError::InvalidGguf`].
    pub fn tensor(&mut self, name: &str) -> Result<QTensor> {
        if !self.has_tensor(name) {
            return Err(self.invalid(format!("tensor `{name}` is missing")));
        }
        self.content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| LmError::InvalidGguf {
                path: self.path.clone(),
                reason: format!("tensor `{name}`: {}", candle_message(&e)),
            })
    }

    /// A 1-D f32 tensor (norm weights, biases), checked against the expected length.
    pub fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let values = self
            .tensor(name)?
            .dequantize(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if values.len() != len {
            return Err(self.invalid(format!(
                "tensor `{name}` has {} values, expected {len}",
                values.len()
            )));
        }
        Ok(values)
    }

    pub fn invalid(&self, reason: String) -> LmError {
        LmError::InvalidGguf {
            path: self.path.clone(),
            reason,
        }
    }
}

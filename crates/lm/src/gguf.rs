//! Opening a GGUF file: its metadata, and its tensors one by one, with clear errors.

use crate::{LmError, Result};
use candle_core::Device;
use candle_core::quantized::QTensor;
use candle_core::quantized::gguf_file::Content;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

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
            reason: e.to_string(),
        })?;
        Ok(Self {
            path,
            reader,
            content,
        })
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
                reason: format!("tensor `{name}`: {e}"),
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

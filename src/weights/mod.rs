//! safetensors weights through a read-only memory map: the header is validated
//! once (bounded size, offsets in order, inside the data, sizes matching shapes),
//! then tensors are looked up by name, with optional prefixes, and checked against
//! the dtype and shape a model asks for.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype as StDtype, SafeTensors};

use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor, TensorView};

/// Where one tensor lives.
#[derive(Clone, Debug)]
struct Entry {
    /// Index of the file (shard) in [`Weights::maps`].
    file: usize,
    dtype: StDtype,
    shape: Vec<usize>,
    /// Absolute byte range in the map.
    start: usize,
    end: usize,
}

/// A mapped safetensors file, or the shards of a sharded checkpoint.
pub struct Weights {
    /// The file, or the shard index (`model.safetensors.index.json`).
    path: PathBuf,
    /// Each mapped file with its path.
    maps: Vec<(PathBuf, Mmap)>,
    entries: HashMap<String, Entry>,
    prefixes: Vec<String>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("path", &self.path)
            .field("tensors", &self.entries.len())
            .field("prefixes", &self.prefixes)
            .finish()
    }
}

fn convert_dtype(d: StDtype) -> Option<DType> {
    match d {
        StDtype::F32 => Some(DType::F32),
        StDtype::F16 => Some(DType::F16),
        StDtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}

impl Weights {
    /// The weights of a model folder: `model.safetensors`, else the shards that
    /// `model.safetensors.index.json` lists (each mapped and validated, every name
    /// of the index found in the shard it names, no name in two shards).
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        if single.is_file() || !index.is_file() {
            return Self::open(single);
        }
        let bad = |reason: String| Error::MalformedWeights {
            path: index.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&index).map_err(|source| Error::Io {
            path: index.clone(),
            source,
        })?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad("no `weight_map` object".into()))?;
        let mut shards: Vec<&str> = Vec::new();
        for (name, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| bad(format!("`{name}` maps to a non-string")))?;
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(bad(format!(
                    "shard name `{file}` is not a file of the folder"
                )));
            }
            if !shards.contains(&file) {
                shards.push(file);
            }
        }
        if shards.is_empty() {
            return Err(bad("`weight_map` lists no tensor".into()));
        }
        let mut out = Self {
            path: index.clone(),
            maps: Vec::new(),
            entries: HashMap::new(),
            prefixes: vec![String::new()],
        };
        for shard in shards {
            let one = Self::open(dir.join(shard))?;
            let file = out.maps.len();
            for (name, mut e) in one.entries {
                if map.get(&name).and_then(|f| f.as_str()) != Some(shard) {
                    return Err(bad(format!(
                        "tensor `{name}` is in `{shard}` but the index does not say so"
                    )));
                }
                e.file = file;
                out.entries.insert(name, e);
            }
            out.maps.extend(one.maps);
        }
        if let Some(name) = map.keys().find(|n| !out.entries.contains_key(*n)) {
            return Err(bad(format!(
                "tensor `{name}` is listed but not in its shard `{}`",
                map[name].as_str().unwrap_or_default()
            )));
        }
        Ok(out)
    }

    /// Maps and validates `path`. A malformed file gives [`Error::MalformedWeights`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < 8 {
            return Err(Error::MalformedWeights {
                path,
                reason: format!("file is {len} bytes, shorter than the 8-byte header length"),
            });
        }
        let map = crate::kernels::mmap::map_readonly(&file).map_err(io)?;
        let (header_len, metadata) =
            SafeTensors::read_metadata(&map).map_err(|e| Error::MalformedWeights {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        // read_metadata checked: header inside the file, offsets contiguous and in
        // order, byte counts equal to shape x dtype size, data ending at the file's end.
        let base = 8 + header_len;
        let entries = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| {
                let (s, e) = info.data_offsets;
                let entry = Entry {
                    file: 0,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: base + s,
                    end: base + e,
                };
                (name, entry)
            })
            .collect::<HashMap<_, _>>();
        if entries
            .values()
            .any(|e| e.end > map.len() || e.start > e.end)
        {
            return Err(Error::MalformedWeights {
                path,
                reason: "a tensor's data lies outside the file".into(),
            });
        }
        Ok(Self {
            maps: vec![(path.clone(), map)],
            path,
            entries,
            prefixes: vec![String::new()],
        })
    }

    /// Looks names up as given first, then with each prefix in turn (for example
    /// `["bert."]` finds `bert.embeddings.word_embeddings.weight` for
    /// `embeddings.word_embeddings.weight`).
    pub fn with_prefixes(mut self, prefixes: &[&str]) -> Self {
        self.prefixes = std::iter::once(String::new())
            .chain(prefixes.iter().map(|p| p.to_string()))
            .collect();
        self
    }

    /// The file this came from (the index, for a sharded checkpoint).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor name in the file, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The stored dtype (safetensors spelling) and shape of a tensor, if present.
    pub fn info(&self, name: &str) -> Option<(String, &[usize])> {
        self.resolve(name)
            .ok()
            .map(|(_, e)| (format!("{:?}", e.dtype), e.shape.as_slice()))
    }

    fn resolve(&self, name: &str) -> Result<(String, &Entry)> {
        for p in &self.prefixes {
            let full = format!("{p}{name}");
            if let Some(e) = self.entries.get(&full) {
                return Ok((full, e));
            }
        }
        Err(Error::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
            tried: self
                .prefixes
                .iter()
                .map(|p| format!("`{p}{name}`"))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// A borrowed view of a tensor (f32, f16 or bf16), as stored.
    pub fn view(&self, name: &str) -> Result<TensorView<'_>> {
        let (full, e) = self.resolve(name)?;
        let dtype = convert_dtype(e.dtype).ok_or_else(|| Error::DTypeMismatch {
            path: self.path.clone(),
            name: full.clone(),
            expected: "F32, F16, BF16".into(),
            found: format!("{:?}", e.dtype),
        })?;
        TensorView::new(dtype, &e.shape, &self.maps[e.file].1[e.start..e.end]).map_err(|err| {
            Error::MalformedWeights {
                path: self.path.clone(),
                reason: format!("tensor `{full}`: {err}"),
            }
        })
    }

    /// A tensor converted to f32, after checking it has `expected` shape.
    pub fn get_f32(&self, name: &str, expected: &[usize]) -> Result<Tensor> {
        let view = self.view(name)?;
        if view.shape() != expected {
            return Err(Error::ShapeMismatch {
                path: self.path.clone(),
                name: self.resolve(name)?.0,
                expected: expected.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        Ok(view.to_f32())
    }
}

//! Sharded safetensors checkpoints: `model.safetensors.index.json` maps each tensor to a shard.
//! Shard names come from the network, so they are checked before any download: plain relative
//! file names only (no `..`, no absolute path, no URL, no query).

use std::collections::{BTreeMap, HashSet};

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use thiserror::Error;

use super::TensorTable;

#[derive(Clone, Debug, Error, PartialEq)]
pub enum IndexError {
    #[error("the index is not valid JSON: {0}")]
    NotJson(String),
    #[error("tensor {0:?} appears twice in weight_map")]
    DuplicateTensor(String),
    #[error("shard name {0:?} is not a plain .safetensors file name in the repository")]
    BadShardName(String),
    #[error("tensor {tensor:?} is mapped to {shard:?} but that shard does not contain it")]
    MissingTensor { tensor: String, shard: String },
    #[error("tensor {tensor:?} is in shard {shard:?} but the index does not map it there")]
    UnexpectedTensor { tensor: String, shard: String },
    #[error("shard {0:?} was not given")]
    MissingShard(String),
}

/// A parsed `model.safetensors.index.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardIndex {
    /// Tensor name → shard file name.
    pub weight_map: BTreeMap<String, String>,
    /// Distinct shard names, sorted.
    pub shards: Vec<String>,
}

/// `weight_map` entries in order, duplicates reported rather than dropped.
struct WeightMap(Vec<(String, String)>);

impl<'de> Deserialize<'de> for WeightMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WeightMap;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of tensor name to shard file")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WeightMap, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    entries.push(entry);
                }
                Ok(WeightMap(entries))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct RawIndex {
    weight_map: WeightMap,
}

/// A shard name we are willing to fetch: `name.safetensors` or `dir/name.safetensors`, relative,
/// without `..`, `.`, empty segments, backslashes, URL syntax or control characters.
pub fn is_safe_shard_name(name: &str) -> bool {
    name.ends_with(".safetensors")
        && name.len() <= 255
        && !name.starts_with('/')
        && name.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && !name.chars().any(|c| c.is_control() || matches!(c, '\\' | ':' | '?' | '#' | '%'))
}

impl ShardIndex {
    pub fn parse(json: &str) -> Result<Self, IndexError> {
        let raw: RawIndex = serde_json::from_str(json).map_err(|e| IndexError::NotJson(e.to_string()))?;
        let mut weight_map = BTreeMap::new();
        for (tensor, shard) in raw.weight_map.0 {
            if !is_safe_shard_name(&shard) {
                return Err(IndexError::BadShardName(shard));
            }
            if weight_map.insert(tensor.clone(), shard).is_some() {
                return Err(IndexError::DuplicateTensor(tensor));
            }
        }
        let mut shards: Vec<String> = weight_map.values().cloned().collect::<HashSet<_>>().into_iter().collect();
        shards.sort();
        Ok(Self { weight_map, shards })
    }

    /// Checks the shards' tables against the index: every mapped tensor is in its shard, and no
    /// shard holds a tensor the index does not map to it (so none is in two shards).
    pub fn check(&self, tables: &BTreeMap<String, TensorTable>) -> Result<(), IndexError> {
        for shard in &self.shards {
            if !tables.contains_key(shard) {
                return Err(IndexError::MissingShard(shard.clone()));
            }
        }
        for (tensor, shard) in &self.weight_map {
            if tables.get(shard).and_then(|t| t.get(tensor)).is_none() {
                return Err(IndexError::MissingTensor { tensor: tensor.clone(), shard: shard.clone() });
            }
        }
        for (shard, table) in tables {
            for t in &table.tensors {
                if self.weight_map.get(&t.name) != Some(shard) {
                    return Err(IndexError::UnexpectedTensor { tensor: t.name.clone(), shard: shard.clone() });
                }
            }
        }
        Ok(())
    }

    /// The shards' tables (in `shards` order, with each file's length) as one table over their
    /// concatenation: shard i's byte ranges moved past the lengths of shards 0..i, as a reader
    /// of the files one after another (`models::Shards`) serves them. Checked first (`check`).
    pub fn join(&self, tables: Vec<(String, TensorTable, u64)>) -> Result<TensorTable, IndexError> {
        let names: Vec<&String> = tables.iter().map(|(n, _, _)| n).collect();
        if names.len() != self.shards.len() || names.iter().zip(&self.shards).any(|(a, b)| *a != b) {
            let missing = self.shards.iter().find(|s| !names.contains(s)).cloned().unwrap_or_else(|| format!("the shards in index order, not {names:?}"));
            return Err(IndexError::MissingShard(missing));
        }
        let by_name: BTreeMap<String, TensorTable> = tables.iter().map(|(n, t, _)| (n.clone(), t.clone())).collect();
        self.check(&by_name)?;
        let mut joined: Option<TensorTable> = None;
        let mut base = 0u64;
        for (_, mut table, len) in tables {
            for t in &mut table.tensors {
                t.range = t.range.start + base..t.range.end + base;
            }
            base += len;
            match &mut joined {
                None => joined = Some(table),
                Some(j) => j.tensors.extend(table.tensors),
            }
        }
        joined.ok_or(IndexError::MissingShard("(an index of no shards)".into()))
    }
}

//! `Classifier` and `Reranker` for Python.

use std::sync::Arc;

use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::engine::{Classifier, Reranker};

use super::common::*;

/// A text classifier.
#[pyclass(name = "Classifier", module = "rinfer._rinfer", frozen)]
pub struct PyClassifier {
    inner: Arc<Classifier>,
}

#[pymethods]
impl PyClassifier {
    /// Loads a sequence-classification model folder.
    ///
    /// `dtype`: "f32" (default), "bf16" or "int8" for the encoder's matrix products;
    /// for bf16/int8 the quality against f32 on a probe set is measured at load
    /// (`model_info["quality"]`) and loading raises `ModelLoadError` when its minimum
    /// cosine is under `quality_floor` (default 0.999 bf16, 0.99 int8). `threads`
    /// resizes the compute pool.
    #[staticmethod]
    #[pyo3(signature = (path, *, dtype=None, threads=None, quality_floor=None))]
    fn load(
        py: Python<'_>,
        path: std::path::PathBuf,
        dtype: Option<&str>,
        threads: Option<usize>,
        quality_floor: Option<f32>,
    ) -> PyResult<Self> {
        Ok(Self {
            inner: load_model(py, dtype, threads, quality_floor, move |o| {
                Classifier::load_with(&path, &o)
            })?,
        })
    }

    /// For each text, every label with its probability, best first.
    fn predict(
        &self,
        py: Python<'_>,
        texts: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Vec<(String, f32)>>> {
        let (texts, _) = texts_arg(texts, "texts")?;
        let inner = self.inner.clone();
        let preds = detached(py, move || inner.predict(&texts))?;
        Ok(preds
            .into_iter()
            .map(|p| p.into_iter().map(|x| (x.label, x.score)).collect())
            .collect())
    }

    /// Raw logits, float32 array (n, labels).
    #[pyo3(signature = (texts, *, truncate=true))]
    fn logits<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        truncate: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (texts, _) = texts_arg(texts, "texts")?;
        let inner = self.inner.clone();
        let arr = detached(py, move || inner.logits(&texts, truncate))?;
        Ok(arr.into_pyarray(py).into_any())
    }

    /// Raw logits of (first, second) text pairs, float32 array (n, labels).
    #[pyo3(signature = (pairs, *, truncate=true))]
    fn pair_logits<'py>(
        &self,
        py: Python<'py>,
        pairs: Vec<(String, String)>,
        truncate: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        let arr = detached(py, move || inner.pair_logits(&pair_refs(&pairs), truncate))?;
        Ok(arr.into_pyarray(py).into_any())
    }

    /// Labels in index order.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.inner.labels().to_vec()
    }

    /// Path, sizes, dtype, ISA and threads.
    #[getter]
    fn model_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        info_dict(py, &self.inner.info())
    }
}

/// A cross-encoder reranker.
#[pyclass(name = "Reranker", module = "rinfer._rinfer", frozen)]
pub struct PyReranker {
    inner: Arc<Reranker>,
}

#[pymethods]
impl PyReranker {
    /// Loads a cross-encoder folder (one-logit sequence classifier).
    ///
    /// `dtype`: "f32" (default), "bf16" or "int8" for the encoder's matrix products;
    /// for bf16/int8 the quality against f32 on a probe set is measured at load
    /// (`model_info["quality"]`) and loading raises `ModelLoadError` when its minimum
    /// cosine is under `quality_floor` (default 0.999 bf16, 0.99 int8). `threads`
    /// resizes the compute pool.
    #[staticmethod]
    #[pyo3(signature = (path, *, dtype=None, threads=None, quality_floor=None))]
    fn load(
        py: Python<'_>,
        path: std::path::PathBuf,
        dtype: Option<&str>,
        threads: Option<usize>,
        quality_floor: Option<f32>,
    ) -> PyResult<Self> {
        Ok(Self {
            inner: load_model(py, dtype, threads, quality_floor, move |o| {
                Reranker::load_with(&path, &o)
            })?,
        })
    }

    /// Raw logits of (query, passage) pairs, float32 array (n,): exact, not rebuilt
    /// from a sigmoid.
    #[pyo3(signature = (pairs, *, truncate=true))]
    fn pair_logits<'py>(
        &self,
        py: Python<'py>,
        pairs: Vec<(String, String)>,
        truncate: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        let v = detached(py, move || inner.pair_logits(&pair_refs(&pairs), truncate))?;
        Ok(v.into_pyarray(py).into_any())
    }

    /// (index, score) of passages by relevance, best first; score = sigmoid(logit).
    #[pyo3(signature = (query, passages, top_k=None))]
    fn rerank(
        &self,
        py: Python<'_>,
        query: String,
        passages: &Bound<'_, PyAny>,
        top_k: Option<usize>,
    ) -> PyResult<Vec<(usize, f32)>> {
        let (passages, _) = texts_arg(passages, "passages")?;
        let inner = self.inner.clone();
        let ranked = detached(py, move || {
            let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
            inner.rerank(&query, &refs, top_k)
        })?;
        Ok(ranked.into_iter().map(|r| (r.index, r.score)).collect())
    }

    /// Path, sizes, dtype, ISA and threads.
    #[getter]
    fn model_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        info_dict(py, &self.inner.info())
    }
}

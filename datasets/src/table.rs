//! Columns of a Parquet file, read by name, with errors that name the file, the column and
//! what was found instead.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::DatasetError;

/// A whole Parquet file in memory.
pub(crate) struct Table {
    path: PathBuf,
    batches: Vec<RecordBatch>,
    columns: Vec<String>,
}

impl Table {
    /// Reads every row group of `path`.
    pub(crate) fn read(path: &Path) -> Result<Self, DatasetError> {
        let bad = |message: String| DatasetError::Format {
            path: path.to_path_buf(),
            message,
        };
        let file = File::open(path).map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| bad(format!("not a readable Parquet file: {e}")))?;
        let columns = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let reader = builder.build().map_err(|e| bad(e.to_string()))?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("cannot decode: {e}")))?;
        Ok(Table {
            path: path.to_path_buf(),
            batches,
            columns,
        })
    }

    /// Whether the file has this column.
    pub(crate) fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }

    pub(crate) fn error(&self, column: &str, message: String) -> DatasetError {
        DatasetError::Column {
            path: self.path.clone(),
            column: column.to_string(),
            message,
        }
    }

    fn arrays(&self, column: &str) -> Result<Vec<ArrayRef>, DatasetError> {
        if !self.has(column) {
            return Err(self.error(
                column,
                format!("missing (columns: {})", self.columns.join(", ")),
            ));
        }
        Ok(self
            .batches
            .iter()
            .filter_map(|b| b.column_by_name(column).cloned())
            .collect())
    }

    /// A text or integer column as strings (integers are written in decimal).
    pub(crate) fn strings(&self, column: &str) -> Result<Vec<Option<String>>, DatasetError> {
        let mut out = Vec::new();
        for array in self.arrays(column)? {
            let n = array.len();
            let values: Vec<Option<String>> = match array.data_type() {
                // A column that is null in every row of the file (HF writes type `null`).
                DataType::Null => vec![None; n],
                DataType::Utf8 => collect(n, |i| {
                    let a = array.as_string::<i32>();
                    a.is_valid(i).then(|| a.value(i).to_string())
                }),
                DataType::LargeUtf8 => collect(n, |i| {
                    let a = array.as_string::<i64>();
                    a.is_valid(i).then(|| a.value(i).to_string())
                }),
                DataType::Utf8View => collect(n, |i| {
                    let a = array.as_string_view();
                    a.is_valid(i).then(|| a.value(i).to_string())
                }),
                DataType::Int64 => collect(n, |i| {
                    let a = array.as_primitive::<Int64Type>();
                    a.is_valid(i).then(|| a.value(i).to_string())
                }),
                DataType::Int32 => collect(n, |i| {
                    let a = array.as_primitive::<Int32Type>();
                    a.is_valid(i).then(|| a.value(i).to_string())
                }),
                DataType::UInt64 => collect(n, |i| {
                    let a = array.as_primitive::<UInt64Type>();
                    a.is_valid(i).then(|| a.value(i).to_string())
                }),
                DataType::UInt32 => collect(n, |i| {
                    let a = array.as_primitive::<UInt32Type>();
                    a.is_valid(i).then(|| a.value(i).to_string())
                }),
                other => {
                    return Err(self.error(
                        column,
                        format!("has type {other}, expected text or an integer"),
                    ));
                }
            };
            out.extend(values);
        }
        Ok(out)
    }

    /// A numeric column (integers or floats) as `f64`.
    pub(crate) fn numbers(&self, column: &str) -> Result<Vec<Option<f64>>, DatasetError> {
        let mut out = Vec::new();
        for array in self.arrays(column)? {
            let n = array.len();
            let values: Vec<Option<f64>> = match array.data_type() {
                DataType::Float64 => collect(n, |i| {
                    let a = array.as_primitive::<Float64Type>();
                    a.is_valid(i).then(|| a.value(i))
                }),
                DataType::Float32 => collect(n, |i| {
                    let a = array.as_primitive::<Float32Type>();
                    a.is_valid(i).then(|| f64::from(a.value(i)))
                }),
                DataType::Int64 => collect(n, |i| {
                    let a = array.as_primitive::<Int64Type>();
                    a.is_valid(i).then(|| a.value(i) as f64)
                }),
                DataType::Int32 => collect(n, |i| {
                    let a = array.as_primitive::<Int32Type>();
                    a.is_valid(i).then(|| f64::from(a.value(i)))
                }),
                other => {
                    return Err(self.error(column, format!("has type {other}, expected a number")));
                }
            };
            out.extend(values);
        }
        Ok(out)
    }

    /// A `list<string>` column; a null list is empty.
    pub(crate) fn string_lists(&self, column: &str) -> Result<Vec<Vec<String>>, DatasetError> {
        let mut out = Vec::new();
        for array in self.arrays(column)? {
            let lists: Vec<Option<ArrayRef>> = match array.data_type() {
                DataType::List(_) => {
                    let a = array.as_list::<i32>();
                    collect(a.len(), |i| a.is_valid(i).then(|| a.value(i)))
                }
                DataType::LargeList(_) => {
                    let a = array.as_list::<i64>();
                    collect(a.len(), |i| a.is_valid(i).then(|| a.value(i)))
                }
                other => {
                    return Err(
                        self.error(column, format!("has type {other}, expected a list of text"))
                    );
                }
            };
            for list in lists {
                let Some(list) = list else {
                    out.push(Vec::new());
                    continue;
                };
                let values = match list.data_type() {
                    DataType::Utf8 => {
                        let a = list.as_string::<i32>();
                        (0..a.len())
                            .filter(|&i| a.is_valid(i))
                            .map(|i| a.value(i).to_string())
                            .collect()
                    }
                    DataType::LargeUtf8 => {
                        let a = list.as_string::<i64>();
                        (0..a.len())
                            .filter(|&i| a.is_valid(i))
                            .map(|i| a.value(i).to_string())
                            .collect()
                    }
                    other => {
                        return Err(self.error(column, format!("holds {other}, expected text")));
                    }
                };
                out.push(values);
            }
        }
        Ok(out)
    }

    /// A binary column, or an image column in the HF `Image` layout
    /// (`struct<bytes: binary, path: string>`), as bytes.
    pub(crate) fn binaries(&self, column: &str) -> Result<Vec<Option<Vec<u8>>>, DatasetError> {
        let mut out = Vec::new();
        for array in self.arrays(column)? {
            out.extend(self.binary_values(column, &array)?);
        }
        Ok(out)
    }

    fn binary_values(
        &self,
        column: &str,
        array: &ArrayRef,
    ) -> Result<Vec<Option<Vec<u8>>>, DatasetError> {
        let n = array.len();
        Ok(match array.data_type() {
            DataType::Binary => collect(n, |i| {
                let a = array.as_binary::<i32>();
                a.is_valid(i).then(|| a.value(i).to_vec())
            }),
            DataType::LargeBinary => collect(n, |i| {
                let a = array.as_binary::<i64>();
                a.is_valid(i).then(|| a.value(i).to_vec())
            }),
            DataType::BinaryView => collect(n, |i| {
                let a = array.as_binary_view();
                a.is_valid(i).then(|| a.value(i).to_vec())
            }),
            DataType::Struct(_) => {
                let s = array.as_struct();
                let bytes = s.column_by_name("bytes").ok_or_else(|| {
                    self.error(column, "is a struct without a `bytes` field".into())
                })?;
                let inner = self.binary_values(column, bytes)?;
                inner
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| if s.is_valid(i) { v } else { None })
                    .collect()
            }
            other => {
                return Err(self.error(
                    column,
                    format!("has type {other}, expected binary or an image struct"),
                ));
            }
        })
    }
}

fn collect<T>(n: usize, f: impl Fn(usize) -> Option<T>) -> Vec<Option<T>> {
    (0..n).map(f).collect()
}

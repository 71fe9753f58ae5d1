//! Ingest: heal's data model, sample policy, rolling windows and dataset files.
mod error;
mod policy;
mod series;
mod window;

pub use error::{Error, Result};
pub use policy::{
    is_stale_marker, Admit, DropCounts, DropReason, Sanitizer, SanitizerConfig, STALE_MARKER_BITS,
};
pub use series::{Labels, Sample, SeriesId, METRIC_NAME_LABEL};
pub use window::Window;
mod nab;
mod time;
pub use nab::{read_nab_csv, read_nab_windows, NabCorpus, NabEntry, NabFile, NabRow, NabWindows, NAB_HEADER};
mod dataset;
pub use dataset::{
    import_long_csv, import_nab_csv, nab_key, truth_path, Dataset, DatasetInfo, NabTruth,
    SeriesData, SeriesInfo, TruthWindow,
};
mod synth;
pub use synth::{synth, SYNTH_SERVICES, SYNTH_SIGNALS, SYNTH_START_MS, SYNTH_STEPS, SYNTH_STEP_MS};

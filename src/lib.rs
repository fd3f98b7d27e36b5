//! layerscope: open any container image, straight from its registry, and see what every layer
//! did to the filesystem.
//!
//! Data flows one way: a [`source`] resolves a reference to an [`image::ImageInfo`] and one byte
//! stream per layer; [`layer`] turns each stream into a compact index; [`tree`] merges the
//! indexes into one filesystem model; [`analysis`] computes the figures that [`ci`], [`export`],
//! [`report`] and the explorer show. [`pipeline`] runs the flow without waiting on any view.
//! [`toolbox`] holds the subcommands that talk to a registry directly (manifest, config,
//! history, blob, tag, tags, catalog, diff); [`compare`] is the model of two images side by side.
//! In CI mode, [`ignore`] leaves paths out of what the rules measure, [`baseline`] compares
//! with an earlier image or report, and [`ci_report`] writes the reports CI systems read.
//! [`completions`] and [`manpage`] generate shell completions and manual pages from [`cli`]'s
//! definition.

pub mod allocator;
pub mod analysis;
pub mod baseline;
pub mod cache;
pub mod chunk_channel;
pub mod ci;
pub mod ci_report;
pub mod cli;
pub mod compare;
pub mod completions;
pub mod digest;
pub mod error;
pub mod escape;
pub mod export;
pub mod findings;
pub mod ignore;
pub mod image;
pub mod layer;
pub mod manpage;
pub mod output_file;
pub mod pipeline;
pub mod priority;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod report;
pub mod source;
pub mod toolbox;
pub mod tree;
pub mod tui;
pub mod unpack;

//! Baseline for `make bench-engine`: runs a model in-process through the same ONNX
//! Runtime session code the server uses (no protocol, no queue) and prints latency
//! percentiles as one JSON line.
//!
//! Usage: bench_inprocess MODEL.onnx SEQ_LEN ITERATIONS [BATCH] [raw]
//! (BATCH rows per run, default 1; raw: also print every sample)

use std::time::Instant;

use oip::{Tensor, TensorData};
use tinyinfer::config::RuntimeOptions;
use tinyinfer::runtime::OrtModel;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(model), Some(seq), Some(iters)) = (args.get(1), args.get(2), args.get(3)) else {
        anyhow::bail!("usage: bench_inprocess MODEL.onnx SEQ_LEN ITERATIONS");
    };
    let seq: i64 = seq.parse()?;
    let iters: usize = iters.parse()?;
    let batch: i64 = match args.get(4) {
        Some(b) if b != "raw" => b.parse()?,
        _ => 1,
    };
    let model = OrtModel::load(std::path::Path::new(model), &RuntimeOptions::default())?;
    let inputs = || -> Vec<Tensor> {
        ["input_ids", "attention_mask"]
            .iter()
            .map(|name| Tensor {
                name: (*name).to_owned(),
                shape: vec![batch, seq],
                data: TensorData::I64((0..batch * seq).map(|i| 1 + i % 1000).collect()),
            })
            .collect()
    };
    for _ in 0..3 {
        model.run(inputs())?;
    }
    let mut lat = Vec::with_capacity(iters);
    for _ in 0..iters {
        let input = inputs();
        let t = Instant::now();
        model.run(input)?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    let rows_per_s = batch as f64 * 1000.0 * lat.len() as f64 / lat.iter().sum::<f64>();
    let mut line = serde_json::json!({
        "p50_ms": pct(0.5), "p99_ms": pct(0.99), "iterations": iters, "batch": batch,
        "rows_per_s": rows_per_s,
    });
    if args.iter().any(|a| a == "raw") {
        line["samples_ms"] = serde_json::json!(lat);
    }
    // A benchmark tool, not the service: its result goes to stdout for the driver script.
    println!("{line}");
    Ok(())
}

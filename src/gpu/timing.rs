//! Timing helpers shared by the kernel autotuner (`autotune::time_candidate`) and the
//! `bench` binary: run recorded dispatches repeatedly, warm-up excluded, and take the
//! median of several repetitions; CPU time of this process (on a CPU driver such as
//! lavapipe the kernels run on its threads).
//!
//! Wall-clock timing wraps submit-and-wait around `inner` back-to-back replays of a
//! dispatch list, so per-submit overhead is amortised. Where the device has
//! TIMESTAMP_QUERY, `gpu_time` also measures the compute pass with timestamps (lavapipe
//! may not offer it; the wall clock is then the only figure).

use super::{Dispatch, Gpu};
use crate::Result;
use crate::platform::Instant;

/// Median of `v` (sorted copy; empty gives 0).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        0.5 * (s[m - 1] + s[m])
    }
}

/// Seconds per replay of `dispatches` and the per-repetition samples.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Median seconds per replay of the dispatch list.
    pub seconds: f64,
    /// Fastest repetition, seconds per replay.
    pub min: f64,
    /// Replays per repetition.
    pub inner: usize,
    pub reps: usize,
}

/// Time `dispatches`: one warm-up replay (pipelines, first-touch of memory), then `reps`
/// repetitions of `inner` replays recorded into one submission each, `inner` chosen so a
/// repetition lasts about `target_s` (at least 1, at most 64).
pub fn time_dispatches(gpu: &Gpu, dispatches: &[&Dispatch], reps: usize, target_s: f64) -> Result<Timing> {
    let t0 = Instant::now();
    gpu.run(dispatches.iter().copied())?;
    let first = t0.elapsed().as_secs_f64().max(1e-6);
    let inner = ((target_s / first).floor() as usize).clamp(1, 64);
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        gpu.run((0..inner).flat_map(|_| dispatches.iter().copied()))?;
        samples.push(t.elapsed().as_secs_f64() / inner as f64);
    }
    let min = samples.iter().cloned().fold(f64::INFINITY, f64::min);
    Ok(Timing { seconds: median(&samples), min, inner, reps: samples.len() })
}

/// GPU-side seconds of one replay of `dispatches`, measured with timestamp queries around
/// the compute pass (median of `reps`), or None when the device lacks TIMESTAMP_QUERY.
pub fn gpu_time(gpu: &Gpu, dispatches: &[&Dispatch], reps: usize) -> Result<Option<f64>> {
    if !gpu.device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
        return Ok(None);
    }
    let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("bench timestamps"), ty: wgpu::QueryType::Timestamp, count: 2 });
    let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("bench timestamps resolve"),
        size: 16,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("bench timestamps staging"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let period = gpu.queue.get_timestamp_period() as f64;
    let mut samples = Vec::new();
    for _ in 0..reps.max(1) {
        let mut enc = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bench timed") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("bench timed"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                }),
            });
            for d in dispatches {
                d.encode(&mut pass);
            }
        }
        enc.resolve_query_set(&set, 0..2, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, 16);
        let idx = gpu.queue.submit(Some(enc.finish()));
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        gpu.wait(Some(idx))?;
        if rx.recv().ok().and_then(|r| r.ok()).is_none() {
            return Ok(None);
        }
        let ts: Vec<u64> = {
            let view = staging.get_mapped_range(..).map_err(|e| crate::Error::new(format!("timestamp readback: {e}")))?;
            bytemuck::cast_slice::<u8, u64>(&view).to_vec()
        };
        staging.unmap();
        if ts[1] > ts[0] {
            samples.push((ts[1] - ts[0]) as f64 * period * 1e-9);
        }
    }
    Ok(if samples.is_empty() { None } else { Some(median(&samples)) })
}

/// `uptime`-style 1-minute load average (Linux), for recording next to every figure.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// CPU seconds (user + system) this process has used so far, from /proc/self/stat (Linux;
/// clock ticks of 10 ms). On a CPU driver like lavapipe the kernels run on this process's
/// threads, so CPU time per replay measures a kernel's cost even when other processes
/// compete for the cores (the wall clock then includes waiting).
pub fn process_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Nanoseconds all live threads of this process have run (sum of
/// /proc/self/task/*/schedstat; Linux), or None. Finer than [`process_cpu_seconds`] (10 ms
/// ticks) but blind to threads that have exited: for timing short runs.
pub fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for t in std::fs::read_dir("/proc/self/task").ok()? {
        let p = t.ok()?.path().join("schedstat");
        // A thread may exit between listing and reading: skip it.
        if let Ok(s) = std::fs::read_to_string(p) {
            total += s.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

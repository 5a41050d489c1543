//! Profile of the network part of one wave training step: where the time of `ntksweep bench`'s
//! one-job row goes, and what the hand-written reverse pass buys over autograd.
//!
//! Run: `cargo run --release --example profile_step -- [width] [reps]` (default 50, 300).
//! Workload: the bench's wave setup (2 inputs, 3 hidden layers, float32, one member), 300
//! residual points carrying u, u_t, u_x, u_tt, u_xx, 300 initial-velocity points carrying
//! u, u_t and 600 value-only points; the loss is the sum of squares of every stream (the
//! residual arithmetic is the same for both paths and is left out).
//!
//! Each line is the best of 5 blocks of `reps` repetitions (the machine this was written on
//! varies +-25% from one second to the next).

use std::time::Instant;

use ntksweep::config::job::{Init, Normalization};
use ntksweep::model::mlp::{layer_sizes, Mlp};
use ntksweep::model::normalize::Normalizer;
use ntksweep::model::streams::{Segment, SegmentedStreams, StreamLayout};
use ntksweep::problem::{Domain, TensorOpts};
use ntksweep::rng;
use tch::{Device, Kind, Tensor};

/// Best time per repetition (ms) over 5 blocks.
fn best_ms(reps: usize, f: &mut dyn FnMut()) -> f64 {
    for _ in 0..reps.div_ceil(10) {
        f(); // warm-up
    }
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() * 1e3 / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn sum_of_squares(s: &SegmentedStreams) -> Tensor {
    s.blocks.iter().flatten().fold(s.value.square().sum(Kind::Float), |l, b| l + b.square().sum(Kind::Float))
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("arguments: [width] [reps]"));
    let width = args.next().unwrap_or(50);
    let reps = args.next().unwrap_or(300);
    ntksweep::host::keep_freed_memory(); // as `ntksweep` itself does
    let opts = TensorOpts { kind: Kind::Float, device: Device::Cpu };
    let mut member = vec![(Init::XavierNormal, rng::stream(1, rng::Purpose::Init, 0))];
    let mlp = Mlp::init(&layer_sizes(2, width, 3), &mut member, opts);
    let domain = Domain { lo: vec![0.0; 2], hi: vec![1.0; 2], time_dependent: true };
    let norm = Normalizer::new(&[Normalization::Zscore], &domain, opts);
    let layout = StreamLayout::second_order(2);
    let segments = vec![
        Segment { points: 300, layout: layout.clone() },
        Segment { points: 300, layout: StreamLayout::first_order(2, &[0]) },
        Segment { points: 600, layout: StreamLayout::value(2) },
    ];
    let x = Tensor::rand([1, 1200, 2], (Kind::Float, Device::Cpu));
    let params = mlp.parameters();

    let autograd_fwd = best_ms(reps, &mut || {
        let _ = sum_of_squares(&mlp.forward_segments(&x, &norm, &layout, &segments));
    });
    let autograd_step = best_ms(reps, &mut || {
        let loss = sum_of_squares(&mlp.forward_segments(&x, &norm, &layout, &segments));
        let _ = Tensor::run_backward(&[loss], &params, false, false);
    });
    let taped_fwd = best_ms(reps, &mut || {
        let _ = mlp.forward_taped(&x, &norm, &layout, &segments);
    });
    let (streams, tape) = mlp.forward_taped(&x, &norm, &layout, &segments);
    let ones: Vec<Option<Tensor>> = streams.blocks.iter().map(|b| b.as_ref().map(|b| b.ones_like())).collect();
    let value_ones = streams.value.ones_like();
    let hand_bwd = best_ms(reps, &mut || {
        let _ = tape.backward(&mlp, &value_ones, &ones);
    });
    let taped_step = best_ms(reps, &mut || {
        let (mut s, tape) = mlp.forward_taped(&x, &norm, &layout, &segments);
        s.value = s.value.set_requires_grad(true);
        for b in s.blocks.iter_mut().flatten() {
            *b = b.set_requires_grad(true);
        }
        let mut wrt = vec![&s.value];
        wrt.extend(s.blocks.iter().flatten());
        let mut g = Tensor::run_backward(&[sum_of_squares(&s)], &wrt, false, false).into_iter();
        let value = g.next().unwrap();
        let blocks: Vec<Option<Tensor>> = s.blocks.iter().map(|b| b.as_ref().and_then(|_| g.next())).collect();
        let _ = tape.backward(&mlp, &value, &blocks);
    });

    // Single operations at the size of a layer tensor (2,700 stream rows x width).
    let a = Tensor::rand([1, 2700, width as i64], (Kind::Float, Device::Cpu));
    let b = Tensor::rand([1, 2700, width as i64], (Kind::Float, Device::Cpu));
    let w = Tensor::rand([1, width as i64, width as i64], (Kind::Float, Device::Cpu));
    let mul = best_ms(reps, &mut || {
        let _ = &a * &b;
    });
    let mm = best_ms(reps, &mut || {
        let _ = a.matmul(&w);
    });
    let mm_t = best_ms(reps, &mut || {
        let _ = a.transpose(1, 2).matmul(&b);
    });
    let cat = best_ms(reps, &mut || {
        let _ = Tensor::cat(&[&a, &b], 1);
    });

    println!("wave network, width {width}, {} threads, best of 5 x {reps}", tch::get_num_threads());
    println!("  autograd: forward {autograd_fwd:.3} ms, forward + backward {autograd_step:.3} ms (backward {:.3})", autograd_step - autograd_fwd);
    println!("  taped:    forward {taped_fwd:.3} ms, hand-written backward {hand_bwd:.3} ms, step with autograd from the streams {taped_step:.3} ms");
    println!("  speed-up of the network step: {:.2}x", autograd_step / taped_step);
    println!("  one op on [2700, {width}]: mul {:.1} us, cat of two {:.1} us; matmul x [{width}, {width}] {:.1} us, transposed [{width}, 2700] x [2700, {width}] {:.1} us",
        mul * 1e3, cat * 1e3, mm * 1e3, mm_t * 1e3);
}

use std::time::Instant;
use ntksweep::config::job::{Init, Normalization};
use ntksweep::model::mlp::{layer_sizes, Mlp};
use ntksweep::model::normalize::Normalizer;
use ntksweep::model::streams::{Segment, StreamLayout};
use ntksweep::problem::{Domain, TensorOpts};
use ntksweep::rng;
use tch::{Device, Kind, Tensor};

fn main() {
    let width: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(50);
    let opts = TensorOpts { kind: Kind::Float, device: Device::Cpu };
    let mut m = vec![(Init::XavierNormal, rng::stream(1, rng::Purpose::Init, 0))];
    let mlp = Mlp::init(&layer_sizes(2, width, 3), &mut m, opts);
    let domain = Domain { lo: vec![0.0; 2], hi: vec![1.0; 2], time_dependent: true };
    let norm = Normalizer::new(&[Normalization::None], &domain, opts);
    let full = StreamLayout::second_order(2);
    let segs = vec![
        Segment { points: 300, layout: full.clone() },
        Segment { points: 300, layout: StreamLayout::first_order(2, &[0]) },
        Segment { points: 600, layout: StreamLayout::value(2) },
    ];
    let x = Tensor::rand([1, 1200, 2], (Kind::Float, Device::Cpu));
    let params = mlp.parameters();
    let reps = 300;
    let loss_of = |s: &ntksweep::model::streams::SegmentedStreams| {
        let mut l = s.value.square().sum(Kind::Float);
        for b in s.blocks.iter().flatten() { l = l + b.square().sum(Kind::Float); }
        l
    };
    for _ in 0..30 { let s = mlp.forward_segments(&x, &norm, &full, &segs); let _ = Tensor::run_backward(&[loss_of(&s)], &params, false, false); }
    let t = Instant::now();
    for _ in 0..reps { let s = mlp.forward_segments(&x, &norm, &full, &segs); let _ = loss_of(&s); }
    let fwd = t.elapsed().as_secs_f64() / reps as f64;
    let t = Instant::now();
    for _ in 0..reps { let s = mlp.forward_segments(&x, &norm, &full, &segs); let _ = Tensor::run_backward(&[loss_of(&s)], &params, false, false); }
    let both = t.elapsed().as_secs_f64() / reps as f64;
    let t = Instant::now();
    for _ in 0..reps { tch::no_grad(|| { let s = mlp.forward_segments(&x, &norm, &full, &segs); let _ = loss_of(&s); }); }
    let ng = t.elapsed().as_secs_f64() / reps as f64;
    let t = Instant::now();
    for _ in 0..reps {
        let (s, tape) = mlp.forward_taped(&x, &norm, &full, &segs);
        let v = s.value.detach().set_requires_grad(true);
        let bl: Vec<Option<Tensor>> = s.blocks.iter().map(|b| b.as_ref().map(|b| b.detach().set_requires_grad(true))).collect();
        let mut l = v.square().sum(Kind::Float);
        for b in bl.iter().flatten() { l = l + b.square().sum(Kind::Float); }
        let mut wrt = vec![&v]; wrt.extend(bl.iter().flatten());
        let g = Tensor::run_backward(&[l], &wrt, false, false);
        let mut it = g[1..].iter();
        let gb: Vec<Option<Tensor>> = bl.iter().map(|b| b.as_ref().map(|_| it.next().unwrap().shallow_clone())).collect();
        let _ = tape.backward(&mlp, &g[0], &gb);
    }
    let hand = t.elapsed().as_secs_f64() / reps as f64;
    {
        let (s, tape) = mlp.forward_taped(&x, &norm, &full, &segs);
        let gb: Vec<Option<Tensor>> = s.blocks.iter().map(|b| b.as_ref().map(|b| b.ones_like())).collect();
        let gv = s.value.ones_like();
        let t = Instant::now();
        for _ in 0..reps { let _ = tape.backward(&mlp, &gv, &gb); }
        println!("tape.backward alone {:.3} ms", t.elapsed().as_secs_f64() / reps as f64 * 1e3);
        let t = Instant::now();
        for _ in 0..reps { let _ = mlp.forward_taped(&x, &norm, &full, &segs); }
        println!("forward_taped alone {:.3} ms", t.elapsed().as_secs_f64() / reps as f64 * 1e3);
        let a = Tensor::rand([1, 2700, 50], (Kind::Float, Device::Cpu));
        let b = Tensor::rand([1, 2700, 50], (Kind::Float, Device::Cpu));
        let t = Instant::now();
        for _ in 0..reps*10 { let _ = &a * &b; }
        println!("one mul [2700,50] {:.1} us", t.elapsed().as_secs_f64() / (reps*10) as f64 * 1e6);
        let w = Tensor::rand([1, 50, 50], (Kind::Float, Device::Cpu));
        let t = Instant::now();
        for _ in 0..reps*10 { let _ = a.matmul(&w); }
        println!("matmul [2700,50]x[50,50] {:.1} us", t.elapsed().as_secs_f64() / (reps*10) as f64 * 1e6);
        let t = Instant::now();
        for _ in 0..reps*10 { let _ = a.transpose(1,2).matmul(&b); }
        println!("matmul [50,2700]x[2700,50] {:.1} us", t.elapsed().as_secs_f64() / (reps*10) as f64 * 1e6);
        let t = Instant::now();
        for _ in 0..reps*10 { let _ = Tensor::cat(&[&a, &b], 1); }
        println!("cat 2x[2700,50] {:.1} us", t.elapsed().as_secs_f64() / (reps*10) as f64 * 1e6);
    }
    println!("hand-written step {:.3} ms", hand * 1e3);
    println!("width {width}: fwd(grad) {:.3} ms, fwd+bwd {:.3} ms, bwd {:.3} ms, fwd(no_grad) {:.3} ms", fwd*1e3, both*1e3, (both-fwd)*1e3, ng*1e3);
}

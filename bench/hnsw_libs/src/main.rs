//! Scratch comparison of HNSW libraries on the same vectors (not part of the product).
use std::time::Instant;

fn read_f32(path: &str) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn truth(x: &[f32], q: &[f32], d: usize, k: usize) -> Vec<Vec<usize>> {
    q.chunks(d).map(|qv| {
        let mut s: Vec<(f32, usize)> = x.chunks(d).enumerate().map(|(i, v)| (v.iter().zip(qv).map(|(a, b)| a * b).sum::<f32>(), i)).collect();
        s.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        s[..k].iter().map(|p| p.1).collect()
    }).collect()
}

fn recall(t: &[Vec<usize>], g: &[Vec<usize>]) -> f64 {
    t.iter().zip(g).map(|(t, g)| g.iter().filter(|x| t.contains(x)).count() as f64 / t.len() as f64).sum::<f64>() / t.len() as f64
}

fn lat(nq: usize, mut f: impl FnMut(usize)) -> f64 {
    (0..3).map(|_| { let s = Instant::now(); for i in 0..nq { f(i) } s.elapsed().as_secs_f64() * 1e3 / nq as f64 }).fold(f64::INFINITY, f64::min)
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (d, m, efc) = (384usize, 16usize, 128usize);
    let x = read_f32(&a[1]);
    let q = read_f32(&a[2]);
    let n = x.len() / d;
    let nq = q.len() / d;
    let k = 10;
    let t = truth(&x, &q, d, k);
    let efs = [16usize, 32, 64, 128];
    println!("n {n}, queries {nq}, M {m}, efC {efc}");
    // hnsw_rs, parallel insert (its deterministic alternative is one insert at a time)
    for parallel in [true, false] {
        let h = hnsw_rs::hnsw::Hnsw::<f32, anndists::dist::DistDot>::new(m, n, 16, efc, anndists::dist::DistDot {});
        let s = Instant::now();
        if parallel {
            let data: Vec<(&[f32], usize)> = x.chunks(d).enumerate().map(|(i, v)| (v, i)).collect();
            h.parallel_insert_slice(&data);
        } else {
            for (i, v) in x.chunks(d).enumerate() { h.insert_slice((v, i)); }
        }
        let build = s.elapsed().as_secs_f64();
        for ef in efs {
            let got: Vec<Vec<usize>> = q.chunks(d).map(|qv| h.search(qv, k, ef).iter().map(|n| n.d_id).collect()).collect();
            let l = lat(nq, |i| { std::hint::black_box(h.search(&q[i * d..(i + 1) * d], k, ef)); });
            println!("hnsw_rs {} build {build:.2} s ef {ef}: recall {:.4} latency {l:.3} ms", if parallel { "parallel" } else { "serial" }, recall(&t, &got));
        }
    }
    // usearch
    let opts = usearch::IndexOptions { dimensions: d, metric: usearch::MetricKind::IP, quantization: usearch::ScalarKind::F32, connectivity: m, expansion_add: efc, expansion_search: 64, multi: false };
    let ix = usearch::Index::new(&opts).unwrap();
    ix.reserve(n).unwrap();
    let s = Instant::now();
    for (i, v) in x.chunks(d).enumerate() { ix.add(i as u64, v).unwrap(); }
    let build = s.elapsed().as_secs_f64();
    for ef in efs {
        ix.change_expansion_search(ef);
        let got: Vec<Vec<usize>> = q.chunks(d).map(|qv| ix.search(qv, k).unwrap().keys.iter().map(|&k| k as usize).collect()).collect();
        let l = lat(nq, |i| { std::hint::black_box(ix.search(&q[i * d..(i + 1) * d], k).unwrap()); });
        println!("usearch serial-add build {build:.2} s ef {ef}: recall {:.4} latency {l:.3} ms", recall(&t, &got));
    }
}

//! Throughput of the two hot paths: scanning requests and encoding slices.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hftp_proto::response::{encode_base64, BASE64_CHUNK};
use hftp_proto::Scanner;

fn scanner(c: &mut Criterion) {
    let mut group = c.benchmark_group("scanner");
    let pipelined: Vec<u8> =
        b"get_metadata hola.txt\r\nget_slice hola.txt 4 19 raw\r\nget_file_listing\r\n"
            .repeat(1000);
    group.throughput(Throughput::Bytes(pipelined.len() as u64));
    group.bench_function("pipelined_requests", |b| {
        b.iter(|| {
            let mut s = Scanner::default();
            let mut rest = &pipelined[..];
            let mut n = 0;
            while !rest.is_empty() {
                let (used, ev) = s.feed(rest);
                rest = &rest[used..];
                n += ev.is_some() as usize;
            }
            black_box(n)
        })
    });
    let long = [b"get_metadata ".as_slice(), &vec![b'x'; 5 << 20], b"\r\n"].concat();
    group.throughput(Throughput::Bytes(long.len() as u64));
    group.bench_function("5MiB_name", |b| {
        b.iter(|| black_box(Scanner::default().feed(&long)))
    });
    group.finish();
}

fn base64(c: &mut Criterion) {
    let mut group = c.benchmark_group("base64");
    let data: Vec<u8> = (0..BASE64_CHUNK * 64).map(|i| (i % 251) as u8).collect();
    let mut out = Vec::with_capacity(BASE64_CHUNK * 2);
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("slice_chunks", |b| {
        b.iter(|| {
            for chunk in data.chunks(BASE64_CHUNK) {
                out.clear();
                encode_base64(chunk, &mut out);
                black_box(&out);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, scanner, base64);
criterion_main!(benches);

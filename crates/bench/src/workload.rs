//! What the load generator asks for: workloads as written on the command
//! line (`metadata:NAME`, `slice:NAME:OFFSET:SIZE`, `mixed:...`) and the
//! prepared request lines they turn into.

use std::fmt;
use std::str::FromStr;

use hftp_proto::reply::Expect;
use hftp_proto::{FileName, Range, Request, SliceMode};

/// One kind of request a connection sends again and again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub request: Request,
}

impl Op {
    /// The request line, CRLF included.
    pub fn line(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.request.encode(&mut out);
        out
    }

    pub fn expect(&self) -> Expect {
        Expect::for_request(&self.request)
    }

    /// The file a slice or metadata request names.
    pub fn name(&self) -> Option<&str> {
        match &self.request {
            Request::GetMetadata { name } | Request::GetSlice { name, .. } => Some(name.as_str()),
            _ => None,
        }
    }

    fn parse(spec: &str) -> Result<Op, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let name = |s: &str| {
            FileName::new(s)
                .map_err(|_| format!("{s:?} is not a valid HFTP file name (A-Z a-z 0-9 . _ -)"))
        };
        let number = |s: &str, what: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("{what} {s:?} is not a decimal number"))
        };
        let request = match parts.as_slice() {
            ["listing"] => Request::GetFileListing,
            ["help"] => Request::Help,
            ["metadata", n] => Request::GetMetadata { name: name(n)? },
            [kind @ ("slice" | "raw"), n, offset, size] => Request::GetSlice {
                name: name(n)?,
                range: Range {
                    offset: number(offset, "offset")?,
                    size: number(size, "size")?,
                },
                mode: if *kind == "raw" {
                    SliceMode::Raw
                } else {
                    SliceMode::Base64
                },
            },
            _ => {
                return Err(format!(
                    "unknown workload {spec:?}: expected metadata:NAME, slice:NAME:OFFSET:SIZE, \
                     raw:NAME:OFFSET:SIZE, listing, help, churn or mixed:W1=N,W2=N"
                ))
            }
        };
        Ok(Op { request })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.request {
            Request::GetFileListing => f.write_str("listing"),
            Request::Help => f.write_str("help"),
            Request::GetMetadata { name } => write!(f, "metadata:{name}"),
            Request::GetSlice { name, range, mode } => {
                let kind = if *mode == SliceMode::Raw {
                    "raw"
                } else {
                    "slice"
                };
                write!(f, "{kind}:{name}:{}:{}", range.offset, range.size)
            }
            Request::Quit => f.write_str("quit"),
        }
    }
}

/// What every connection of a run does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Requests drawn from weighted ops (one op of weight 1 for a plain
    /// workload), `pipeline` of them in flight per connection.
    Requests(Vec<(Op, u32)>),
    /// Connect, `quit`, read `0 OK` and the server's close, again.
    Churn,
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(spec: &str) -> Result<Workload, String> {
        if spec == "churn" {
            return Ok(Workload::Churn);
        }
        let Some(items) = spec.strip_prefix("mixed:") else {
            return Ok(Workload::Requests(vec![(Op::parse(spec)?, 1)]));
        };
        let mut ops = Vec::new();
        for item in items.split(',') {
            let (op, weight) = item
                .rsplit_once('=')
                .ok_or_else(|| format!("mixed item {item:?} has no =WEIGHT"))?;
            let weight: u32 = weight
                .parse()
                .ok()
                .filter(|&w| w > 0 && w <= 1_000_000)
                .ok_or_else(|| {
                    format!("weight {weight:?} of {op:?} is not a number in 1..=1000000")
                })?;
            ops.push((Op::parse(op)?, weight));
        }
        if ops.is_empty() {
            return Err("mixed: needs at least one WORKLOAD=WEIGHT".into());
        }
        Ok(Workload::Requests(ops))
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::Churn => f.write_str("churn"),
            Workload::Requests(ops) if ops.len() == 1 && ops[0].1 == 1 => write!(f, "{}", ops[0].0),
            Workload::Requests(ops) => {
                f.write_str("mixed:")?;
                for (i, (op, w)) in ops.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{op}={w}")?;
                }
                Ok(())
            }
        }
    }
}

/// A workload's ops, encoded once, with a weighted choice.
#[derive(Debug)]
pub struct Mix {
    pub ops: Vec<Prepared>,
    /// Cumulative weights.
    bounds: Vec<u32>,
}

/// One op, ready to be sent.
#[derive(Debug)]
pub struct Prepared {
    pub op: Op,
    pub line: Vec<u8>,
    pub expect: Expect,
}

impl Mix {
    pub fn new(ops: &[(Op, u32)]) -> Mix {
        let mut total = 0u32;
        let mut bounds = Vec::new();
        let mut prepared = Vec::new();
        for (op, weight) in ops {
            total = total.saturating_add(*weight);
            bounds.push(total);
            prepared.push(Prepared {
                line: op.line(),
                expect: op.expect(),
                op: op.clone(),
            });
        }
        Mix {
            ops: prepared,
            bounds,
        }
    }

    /// Index of the op to send next, given a random number.
    pub fn pick(&self, random: u64) -> usize {
        if self.ops.len() == 1 {
            return 0;
        }
        let total = *self.bounds.last().unwrap_or(&1) as u64;
        let r = (random % total) as u32;
        self.bounds.iter().position(|&b| r < b).unwrap_or(0)
    }
}

/// xorshift64*: a cheap per-connection random source for mixed workloads.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_workloads() {
        for spec in [
            "metadata:a.txt",
            "slice:big.bin:0:1024",
            "raw:big.bin:5:7",
            "listing",
            "help",
            "churn",
            "mixed:metadata:a=8,slice:a:0:1024=2",
        ] {
            let w: Workload = spec.parse().unwrap();
            assert_eq!(w.to_string(), spec);
        }
        let w: Workload = "raw:f:1:2".parse().unwrap();
        let Workload::Requests(ops) = w else { panic!() };
        assert_eq!(ops[0].0.line(), b"get_slice f 1 2 raw\r\n");
    }

    #[test]
    fn rejects_bad_workloads() {
        for spec in [
            "",
            "metadata",
            "metadata:a/b",
            "slice:a:x:1",
            "mixed:",
            "mixed:listing=0",
            "foo",
        ] {
            assert!(spec.parse::<Workload>().is_err(), "{spec}");
        }
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let Workload::Requests(ops) = "mixed:listing=3,help=1".parse().unwrap() else {
            panic!()
        };
        let mix = Mix::new(&ops);
        let mut rng = Rng::new(7);
        let firsts = (0..4000).filter(|_| mix.pick(rng.next_u64()) == 0).count();
        assert!((2700..3300).contains(&firsts), "{firsts}");
    }
}

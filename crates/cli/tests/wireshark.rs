//! The Wireshark dissector `contrib/wireshark/hftp.lua`, read by real
//! `tshark`, on captures of real sessions with `hftp serve`:
//!
//! - live: `dumpcap` records the loopback traffic of a scripted session
//!   (a listing, sizes, base64 and raw slices, errors, pipelining, quit, a
//!   fatal error);
//! - byte exact: the bytes of a real session are laid out by the test, one
//!   TCP segment per chunk, and turned into a capture by `text2pcap` (a
//!   request one byte at a time, a CR LF split across segments, pipelined
//!   requests, responses cut at arbitrary points, a raw slice over more than 50
//!   segments).
//!
//! - over TLS: `hftp serve --tls-cert` and `openssl s_client -keylogfile`,
//!   captured live and read with the key log (`-o tls.keylog_file:`): the
//!   same PDUs and fields as the same session in clear; nothing without it;
//!   the same TLS bytes laid out again on port 19500, several records to
//!   a frame.
//!
//! Every PDU's fields are compared with what the session sent, with a
//! one-pass and a two-pass (`-2`) dissection, and tshark must print no Lua
//! error. The tools come with the `tshark` package (`.ci/run` installs it);
//! the TLS test also needs `openssl`.
//!
//! Tier: full (every test marked `#[ignore = "full tier: ..."]`): needs
//! tshark (and openssl).

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::support::pki::Pki;
use crate::support::{tools, Server};
use serde_json::Value;

/// How long a tool may take to get going or to finish.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The 32 bytes of the protocol's example file.
const HOLA: &[u8] = b"Que calor que hace hoy, pinocho!";

fn lua_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/wireshark/hftp.lua")
}

/// Bytes of a file too large for one loopback segment (64 KiB at most), so
/// its raw slice is always split.
fn big_file() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A directory holding `hola.txt` and `big.bin`.
fn served_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hola.txt"), HOLA).expect("write hola.txt");
    std::fs::write(dir.path().join("big.bin"), big_file()).expect("write big.bin");
    dir
}

/// Runs a Wireshark tool (with `HOME` set to `home`, if given), failing the
/// test with a clear message when it is not installed.
fn run_tool_in(tool: &str, args: &[&str], home: Option<&Path>) -> Output {
    let mut command = Command::new(tool);
    command.args(args).stdin(Stdio::null());
    if let Some(home) = home {
        command.env("HOME", home);
    }
    match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "{tool} is not installed: `apt-get install tshark` provides it (.ci/run installs it)"
        ),
        Err(e) => panic!("cannot run {tool}: {e}"),
    }
}

fn run_tool(tool: &str, args: &[&str]) -> Output {
    run_tool_in(tool, args, None)
}

/// Checks tshark's stderr: the only line allowed is its warning about
/// running as root; anything else (a Lua error above all) fails the test.
fn assert_quiet_stderr(args: &[&str], stderr: &[u8]) {
    let stderr = String::from_utf8_lossy(stderr);
    let unexpected: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with("Running as user \"root\""))
        .collect();
    assert!(
        unexpected.is_empty(),
        "tshark {args:?} printed on stderr:\n{}",
        unexpected.join("\n")
    );
}

/// `tshark` with the dissector loaded by `-X lua_script:`; its stdout.
fn tshark(args: &[&str]) -> String {
    let script = format!("lua_script:{}", lua_script().display());
    let mut all = vec!["-X", script.as_str()];
    all.extend_from_slice(args);
    tshark_in(&all, None)
}

/// `tshark ARGS` with `HOME` set to `home`, if given; its stdout. Fails on
/// an error, on anything unexpected on stderr, and on a Lua error in the
/// dissection.
fn tshark_in(args: &[&str], home: Option<&Path>) -> String {
    let output = run_tool_in("tshark", args, home);
    assert!(
        output.status.success(),
        "tshark {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_quiet_stderr(args, &output.stderr);
    let stdout = String::from_utf8(output.stdout).expect("tshark prints UTF-8");
    assert!(
        !stdout.contains("Lua Error:"),
        "tshark {args:?}: the dissector raised a Lua error:\n{stdout}"
    );
    stdout
}

/// One HFTP PDU as tshark shows it: its frame, its fields in tree order,
/// and its expert infos (id, message).
#[derive(Debug, Clone, PartialEq)]
struct Pdu {
    frame: u64,
    fields: Vec<(String, String)>,
    experts: Vec<(String, String)>,
    /// The frame's `tcp.segment.count` (reassembled PDUs only).
    segments: Option<u64>,
    /// The frame's `tls.segment.count`: the TLS records a PDU decrypted
    /// from a key log was reassembled from (HFTP over TLS only).
    records: Option<u64>,
}

impl Pdu {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The one field `name`; fails, showing the PDU, when it is missing.
    fn get(&self, name: &str) -> &str {
        self.field(name)
            .unwrap_or_else(|| panic!("no {name} in the PDU {self:#?}"))
    }

    fn expert_ids(&self) -> Vec<&str> {
        self.experts.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// The message of the expert info `id`; fails when it is missing.
    fn expert(&self, id: &str) -> &str {
        self.experts
            .iter()
            .find(|(key, _)| key == id)
            .map(|(_, message)| message.as_str())
            .unwrap_or_else(|| panic!("no expert info {id} in the PDU {self:#?}"))
    }

    fn is_request(&self) -> bool {
        self.field("hftp.request").is_some()
    }

    fn is_response(&self) -> bool {
        self.field("hftp.status").is_some()
    }

    /// The fields without those only a second pass can know.
    fn one_pass_view(&self) -> Pdu {
        let mut pdu = self.clone();
        pdu.fields.retain(|(key, _)| key != "hftp.response_in");
        pdu
    }
}

fn flatten(value: &Value, key: &str, pdu: &mut Pdu) {
    match value {
        Value::String(text) => pdu.fields.push((key.to_string(), text.clone())),
        Value::Array(items) => items.iter().for_each(|item| flatten(item, key, pdu)),
        Value::Object(map) if key == "_ws.expert" => {
            let id = map.keys().find(|k| !k.starts_with("_ws.expert"));
            let message = map.get("_ws.expert.message").and_then(Value::as_str);
            if let (Some(id), Some(message)) = (id, message) {
                pdu.experts.push((id.clone(), message.to_string()));
            }
        }
        Value::Object(map) => map.iter().for_each(|(k, v)| flatten(v, k, pdu)),
        _ => {}
    }
}

/// Every HFTP PDU of `pcap`, in order. `decode_as` is the server port for
/// `-d tcp.port==PORT,hftp` (None: rely on the registration on 19500);
/// `extra` are more tshark arguments.
fn dissect(pcap: &Path, decode_as: Option<u16>, two_pass: bool, extra: &[&str]) -> Vec<Pdu> {
    let pcap = pcap.to_str().expect("UTF-8 path");
    let decode = decode_as.map(|port| format!("tcp.port=={port},hftp"));
    let mut args = vec!["-r", pcap, "-T", "json", "--no-duplicate-keys"];
    args.extend_from_slice(extra);
    if let Some(decode) = &decode {
        args.extend(["-d", decode.as_str()]);
    }
    if two_pass {
        args.push("-2");
    }
    let json: Value = serde_json::from_str(&tshark(&args)).expect("tshark prints JSON");
    let mut pdus = Vec::new();
    for packet in json.as_array().expect("a JSON array of packets") {
        let layers = &packet["_source"]["layers"];
        assert!(
            layers.get("_ws.malformed").is_none(),
            "a malformed packet: {layers:#}"
        );
        let frame: u64 = layers["frame"]["frame.number"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .expect("frame.number");
        let segments = layers["tcp.segments"]["tcp.segment.count"]
            .as_str()
            .and_then(|n| n.parse().ok());
        let records = layers["tls.segments"]["tls.segment.count"]
            .as_str()
            .and_then(|n| n.parse().ok());
        let hftp = match &layers["hftp"] {
            Value::Array(items) => items.clone(),
            Value::Null => Vec::new(),
            one => vec![one.clone()],
        };
        for item in hftp {
            let mut pdu = Pdu {
                frame,
                fields: Vec::new(),
                experts: Vec::new(),
                segments,
                records,
            };
            flatten(&item, "hftp", &mut pdu);
            pdus.push(pdu);
        }
    }
    pdus
}

/// Dissects with one pass and with two; both must agree (the second pass
/// adds only `hftp.response_in`). Returns the two-pass PDUs.
fn dissect_both_ways(pcap: &Path, decode_as: Option<u16>) -> Vec<Pdu> {
    dissect_both_ways_with(pcap, decode_as, &[])
}

fn dissect_both_ways_with(pcap: &Path, decode_as: Option<u16>, extra: &[&str]) -> Vec<Pdu> {
    let one = dissect(pcap, decode_as, false, extra);
    let two = dissect(pcap, decode_as, true, extra);
    let two_viewed: Vec<Pdu> = two.iter().map(Pdu::one_pass_view).collect();
    assert_eq!(one, two_viewed, "one-pass and two-pass dissections differ");
    two
}

/// The frames a display filter selects.
fn frames_matching(pcap: &Path, decode_as: u16, filter: &str) -> Vec<u64> {
    let decode = format!("tcp.port=={decode_as},hftp");
    let pcap = pcap.to_str().expect("UTF-8 path");
    let args = [
        "-r",
        pcap,
        "-d",
        &decode,
        "-2",
        "-Y",
        filter,
        "-T",
        "fields",
        "-e",
        "frame.number",
    ];
    tshark(&args)
        .lines()
        .map(|n| n.parse().expect("a frame number"))
        .collect()
}

/// The lowercase `aa:bb:...` form tshark gives byte fields.
fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Sends `request` and reads exactly the `expected` answer (checking it),
/// so that the capture holds a real session with known contents.
fn exchange(stream: &mut TcpStream, request: &[u8], expected: &[u8]) {
    stream.write_all(request).expect("send a request");
    let mut answer = vec![0; expected.len()];
    stream.read_exact(&mut answer).expect("read the answer");
    assert!(
        answer == expected,
        "the server answered {:?} to {:?}",
        String::from_utf8_lossy(&answer),
        String::from_utf8_lossy(request)
    );
}

/// Reads until the server closes; the connection must end with `expected`.
fn read_to_close(stream: &mut TcpStream, expected: &[u8]) {
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .expect("read until the server closes");
    assert_eq!(
        String::from_utf8_lossy(&rest),
        String::from_utf8_lossy(expected)
    );
}

fn raw_slice_answer(body: &[u8]) -> Vec<u8> {
    let mut answer = format!("0 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    answer.extend_from_slice(body);
    answer
}

const LISTING: &[u8] = b"0 OK\r\nbig.bin\r\nhola.txt\r\n\r\n";
const HELP: &[u8] =
    b"0 OK\r\nget_file_listing\r\nget_metadata\r\nget_slice\r\nhelp\r\nquit\r\n\r\n";

// ---------------------------------------------------------------------------
// Live capture with dumpcap
// ---------------------------------------------------------------------------

/// `dumpcap` recording loopback traffic to one port, as pcapng on a pipe
/// (which dumpcap flushes after every packet).
struct Capture {
    child: Child,
    bytes: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(mut pipe: impl Read + Send + 'static, sink: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

impl Capture {
    fn start(port: u16) -> Capture {
        let filter = format!("tcp port {port}");
        let mut child = match Command::new("dumpcap")
            // A 64 MiB kernel buffer (-B): on a loaded machine the default
            // 2 MiB fills during a raw slice and packets are lost.
            .args(["-i", "lo", "-f", &filter, "-B", "64", "-w", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!(
                "dumpcap is not installed: `apt-get install tshark` provides it (.ci/run installs it)"
            ),
            Err(e) => panic!("cannot run dumpcap: {e}"),
        };
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped"), Arc::clone(&bytes)),
            collect(child.stderr.take().expect("piped"), Arc::clone(&stderr)),
        ];
        Capture {
            child,
            bytes,
            stderr,
            readers,
        }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The packets (pcapng enhanced packet blocks) written so far, as the
    /// frames they hold.
    fn frames(&self) -> Vec<Vec<u8>> {
        let bytes = self.bytes.lock().unwrap();
        let mut frames = Vec::new();
        let mut at = 0;
        while at + 12 <= bytes.len() {
            let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
            if at == 0 {
                assert_eq!(
                    word(8),
                    0x1A2B_3C4D,
                    "dumpcap wrote no little-endian pcapng"
                );
            }
            let length = word(at + 4) as usize;
            assert!(length >= 12, "a pcapng block of {length} bytes");
            if at + length > bytes.len() {
                break;
            }
            if word(at) == 6 && length >= 28 {
                // Block type, length, interface, timestamp (2 words),
                // captured length, original length, then the frame.
                let captured = word(at + 20) as usize;
                let start = at + 28;
                frames.push(bytes[start..(start + captured).min(at + length)].to_vec());
            }
            at += length;
        }
        frames
    }

    /// Whether a captured TCP segment has `port` as its source or
    /// destination (loopback frames: a 14-byte Ethernet header, IPv4).
    fn saw_port(&self, port: u16) -> bool {
        self.frames().iter().any(|f| {
            let Some(&version_ihl) = f.get(14) else {
                return false;
            };
            let tcp = 14 + usize::from(version_ihl & 0x0f) * 4;
            let at = |i: usize| f.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            version_ihl >> 4 == 4 && (at(tcp) == Some(port) || at(tcp + 2) == Some(port))
        })
    }

    /// Makes sure everything sent to the server so far has been captured:
    /// connects (and closes) until the probe connection's own packets show
    /// up in the capture. Packets are captured in the order they are sent,
    /// so the probe's segments prove the session before it was recorded (a
    /// session packet arriving late would not).
    fn sync(&mut self, server: SocketAddr) {
        let deadline = Instant::now() + TOOL_TIMEOUT;
        loop {
            let probe = TcpStream::connect(server).expect("probe connection");
            let probe_port = probe.local_addr().expect("probe address").port();
            drop(probe);
            let probe_deadline = Instant::now() + Duration::from_secs(1);
            while Instant::now() < probe_deadline {
                if self.saw_port(probe_port) {
                    return;
                }
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("dumpcap exited ({status}):\n{}", self.stderr());
                }
                thread::sleep(Duration::from_millis(10));
            }
            assert!(
                Instant::now() < deadline,
                "dumpcap did not capture the probe within {TOOL_TIMEOUT:?}:\n{}",
                self.stderr()
            );
        }
    }

    /// Stops dumpcap (SIGINT, as Ctrl-C) and writes the capture to `path`.
    fn finish(mut self, path: &Path) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill has no memory-safety preconditions; the child is not
        // reaped yet, so the pid is still dumpcap's.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + TOOL_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for dumpcap") {
                break status;
            }
            assert!(Instant::now() < deadline, "dumpcap did not stop on SIGINT");
            thread::sleep(Duration::from_millis(10));
        };
        for reader in self.readers.drain(..) {
            reader.join().expect("reader thread");
        }
        assert!(
            status.success(),
            "dumpcap failed ({status}):\n{}",
            self.stderr()
        );
        // "Packets received/dropped on interface 'lo': 120/0 (...)"
        let stderr = self.stderr();
        let dropped = stderr
            .lines()
            .find_map(|l| l.split_once("received/dropped on interface"))
            .and_then(|(_, rest)| {
                rest.split_whitespace()
                    .filter_map(|t| t.split_once('/'))
                    .find(|(a, b)| {
                        !a.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
                    })
            })
            .map(|(_, dropped)| dropped.to_string());
        assert_eq!(
            dropped.as_deref(),
            Some("0"),
            "dumpcap lost packets, the capture cannot be dissected whole:\n{stderr}"
        );
        std::fs::write(path, &*self.bytes.lock().unwrap()).expect("write the capture");
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

#[test]
#[ignore = "full tier: needs tshark (apt-get install tshark)"]
fn live_capture_of_a_session_is_dissected() {
    let dir = served_dir();
    let server = Server::builder(dir.path()).start();
    let port = server.addr().port();
    let work = tempfile::tempdir().expect("tempdir");
    let pcap = work.path().join("session.pcapng");
    let big = big_file();

    let mut capture = Capture::start(port);
    capture.sync(server.addr());

    let mut session = support::connect(server.addr(), TOOL_TIMEOUT);
    exchange(&mut session, b"get_file_listing\r\n", LISTING);
    exchange(
        &mut session,
        b"get_metadata hola.txt\r\n",
        b"0 OK\r\n32\r\n",
    );
    exchange(
        &mut session,
        b"get_slice hola.txt 4 19\r\n",
        b"0 OK\r\nY2Fsb3IgcXVlIGhhY2UgaG95LA==\r\n",
    );
    exchange(
        &mut session,
        b"get_slice big.bin 0 300000 raw\r\n",
        &raw_slice_answer(&big),
    );
    exchange(&mut session, b"help\r\n", HELP);
    exchange(&mut session, b"verdura\r\n", b"200 NO SUCH COMMAND\r\n");
    exchange(
        &mut session,
        b"get_slice hola.txt 30 3\r\n",
        b"203 OFFSET EXCEEDS FILE SIZE\r\n",
    );
    exchange(
        &mut session,
        b"get_metadata hola.txt\r\nget_slice hola.txt 0 5 raw\r\nget_metadata nada.txt\r\n",
        b"0 OK\r\n32\r\n0 OK\r\nContent-Length: 5\r\n\r\nQue c202 FILE NOT FOUND\r\n",
    );
    session.write_all(b"quit\r\n").expect("send quit");
    read_to_close(&mut session, b"0 OK\r\n");

    let mut fatal = support::connect(server.addr(), TOOL_TIMEOUT);
    fatal
        .write_all(b"get_metadata hola.txt\nget_metadata hola.txt\r\n")
        .expect("send a bare LF");
    read_to_close(&mut fatal, b"100 BAD EOL\r\n");

    capture.sync(server.addr());
    capture.finish(&pcap);

    let pdus = dissect_both_ways(&pcap, Some(port));
    // The probe connections carry no data: every PDU belongs to one of the
    // two sessions.
    let requests: Vec<&Pdu> = pdus.iter().filter(|p| p.is_request()).collect();
    let responses: Vec<&Pdu> = pdus.iter().filter(|p| p.is_response()).collect();
    let commands: Vec<&str> = requests.iter().map(|p| p.get("hftp.command")).collect();
    assert_eq!(
        commands,
        [
            "get_file_listing",
            "get_metadata",
            "get_slice",
            "get_slice",
            "help",
            "verdura",
            "get_slice",
            "get_metadata",
            "get_slice",
            "get_metadata",
            "quit",
            "get_metadata",
        ]
    );
    let statuses: Vec<&str> = responses.iter().map(|p| p.get("hftp.status")).collect();
    assert_eq!(
        statuses,
        ["0", "0", "0", "0", "0", "200", "203", "0", "0", "202", "0", "100"]
    );
    // Each response names its request's frame, and each request its
    // response's frame (two-pass), across the pipelined three too.
    for (request, response) in requests.iter().zip(&responses) {
        assert_eq!(
            response.get("hftp.request_in"),
            request.frame.to_string(),
            "request {request:#?}, response {response:#?}"
        );
        assert_eq!(request.get("hftp.response_in"), response.frame.to_string());
        assert_eq!(
            response.get("hftp.response_to"),
            request.get("hftp.request")
        );
    }
    let pipelined = &requests[7..10];
    assert!(
        pipelined.iter().all(|p| p.frame == pipelined[0].frame),
        "the three pipelined requests travelled in one segment: {pipelined:#?}"
    );
    assert_eq!(
        requests[0..11]
            .iter()
            .map(|p| p.get("hftp.request_number"))
            .collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]
    );
    assert_eq!(requests[11].get("hftp.request_number"), "1");

    // Listing, metadata, base64 slice.
    assert_eq!(
        responses[0].all("hftp.listing.name"),
        ["big.bin", "hola.txt"]
    );
    assert_eq!(responses[0].get("hftp.listing.count"), "2");
    assert_eq!(requests[1].get("hftp.name"), "hola.txt");
    assert_eq!(responses[1].get("hftp.file_size"), "32");
    assert_eq!(requests[2].all("hftp.argument"), ["hola.txt", "4", "19"]);
    assert_eq!(requests[2].get("hftp.offset"), "4");
    assert_eq!(requests[2].get("hftp.size"), "19");
    assert_eq!(requests[2].get("hftp.raw"), "0");
    assert_eq!(
        responses[2].get("hftp.base64"),
        "Y2Fsb3IgcXVlIGhhY2UgaG95LA=="
    );
    assert_eq!(responses[2].get("hftp.base64_length"), "28");
    assert_eq!(responses[2].get("hftp.decoded_length"), "19");
    assert_eq!(responses[2].get("hftp.decoded"), hex(&HOLA[4..23]));

    // The raw slice: reassembled from several segments (a loopback segment
    // holds at most 64 KiB), body complete and byte-exact.
    assert_eq!(requests[3].get("hftp.raw"), "1");
    let raw = responses[3];
    assert_eq!(raw.get("hftp.content_length"), "300000");
    assert_eq!(raw.get("hftp.body_length"), "300000");
    assert!(raw.get("hftp.body") == hex(&big), "the raw body differs");
    assert!(
        raw.segments.is_some_and(|n| n >= 5),
        "300000 bytes come in 5 segments or more: {:?}",
        raw.segments
    );

    // help, and the non-fatal errors.
    assert_eq!(
        responses[4].all("hftp.help.command"),
        [
            "get_file_listing",
            "get_metadata",
            "get_slice",
            "help",
            "quit"
        ]
    );
    assert!(requests[5]
        .expert("hftp.rejected")
        .contains("200 NO SUCH COMMAND"));
    assert_eq!(responses[5].get("hftp.status_text"), "NO SUCH COMMAND");
    assert!(responses[5].expert("hftp.error_status").contains("200"));
    assert_eq!(
        responses[6].get("hftp.status_text"),
        "OFFSET EXCEEDS FILE SIZE"
    );
    assert_eq!(responses[8].get("hftp.body"), hex(b"Que c"));
    assert_eq!(responses[9].get("hftp.status"), "202");

    // Expert info exactly where something is wrong.
    for (i, request) in requests.iter().enumerate() {
        let expected: &[&str] = match i {
            5 => &["hftp.rejected"],
            11 => &["hftp.fatal_request"],
            _ => &[],
        };
        assert_eq!(request.expert_ids(), expected, "request {request:#?}");
    }
    for (i, response) in responses.iter().enumerate() {
        let expected: &[&str] = match i {
            5 | 6 | 9 => &["hftp.error_status"],
            11 => &["hftp.fatal"],
            _ => &[],
        };
        assert_eq!(response.expert_ids(), expected, "response {response:#?}");
    }
    assert_eq!(
        pdus.len(),
        requests.len() + responses.len() + 1,
        "requests, responses and the ignored bytes, nothing else: {pdus:#?}"
    );

    // The fatal error: the request is marked, what follows the bare LF is
    // data the server ignores, the answer is a fatal error.
    let fatal_request = requests[11];
    assert_eq!(fatal_request.get("hftp.request"), "get_metadata hola.txt");
    assert!(fatal_request
        .expert("hftp.fatal_request")
        .contains("100 BAD EOL"));
    let ignored = pdus
        .iter()
        .find(|p| p.field("hftp.ignored").is_some())
        .expect("the bytes after the bare LF, as ignored data");
    assert_eq!(
        ignored.get("hftp.ignored"),
        hex(b"get_metadata hola.txt\r\n")
    );
    assert!(ignored.expert_ids().contains(&"hftp.ignored"));
    let fatal_response = responses[11];
    assert_eq!(fatal_response.get("hftp.status_text"), "BAD EOL");
    assert!(fatal_response
        .expert("hftp.fatal")
        .contains("closes the connection"));

    // Display filters.
    let get_slice_frames: BTreeSet<u64> = requests
        .iter()
        .filter(|p| p.get("hftp.command") == "get_slice")
        .map(|p| p.frame)
        .collect();
    let filtered: BTreeSet<u64> = frames_matching(&pcap, port, "hftp.command == \"get_slice\"")
        .into_iter()
        .collect();
    assert_eq!(filtered, get_slice_frames);
    assert_eq!(
        frames_matching(&pcap, port, "hftp.status == 203"),
        [responses[6].frame]
    );
    assert_eq!(
        frames_matching(&pcap, port, "hftp.command == \"verdura\""),
        [requests[5].frame]
    );
    assert_eq!(
        frames_matching(&pcap, port, "hftp.fatal"),
        [fatal_response.frame]
    );
}

// ---------------------------------------------------------------------------
// Byte-exact captures with text2pcap
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Debug)]
enum Side {
    Client,
    Server,
}

/// TCP segments laid out one by one: which side sends which bytes, in the
/// order of the capture.
#[derive(Default)]
struct Segments {
    packets: Vec<(Side, Vec<u8>)>,
}

impl Segments {
    /// One segment per chunk.
    fn send(&mut self, side: Side, chunks: &[&[u8]]) {
        for chunk in chunks {
            self.packets.push((side, chunk.to_vec()));
        }
    }

    /// `bytes` in segments of `size` bytes (the last may be shorter).
    fn send_in_pieces(&mut self, side: Side, bytes: &[u8], size: usize) {
        for chunk in bytes.chunks(size) {
            self.packets.push((side, chunk.to_vec()));
        }
    }

    /// The frame (1-based) whose segment carries byte `at` of `side`'s
    /// stream.
    fn frame_of(&self, side: Side, at: usize) -> u64 {
        let mut start = 0;
        for (index, (sender, bytes)) in self.packets.iter().enumerate() {
            if *sender != side {
                continue;
            }
            if at < start + bytes.len() {
                return index as u64 + 1;
            }
            start += bytes.len();
        }
        panic!("{side:?} sent fewer than {} bytes", at + 1);
    }

    /// The frame where a PDU of `side` ending at stream offset `end` is
    /// dissected: the one carrying its last byte.
    fn frame_ending(&self, side: Side, end: usize) -> u64 {
        self.frame_of(side, end - 1)
    }

    /// How many segments carry the bytes `[start, end)` of `side`'s stream.
    fn segments_spanned(&self, side: Side, start: usize, end: usize) -> u64 {
        let first = self.frame_of(side, start);
        let last = self.frame_of(side, end - 1);
        self.packets[first as usize - 1..last as usize]
            .iter()
            .filter(|(sender, _)| *sender == side)
            .count() as u64
    }

    /// Writes the capture with text2pcap: IPv4 and TCP headers from
    /// 127.0.0.1:`client_port` to 127.0.0.2:`server_port` and back, with
    /// sequence numbers that follow each side's stream.
    fn write_pcap(&self, dir: &Path, name: &str, client_port: u16, server_port: u16) -> PathBuf {
        let dump: String = self
            .packets
            .iter()
            .map(|(side, bytes)| {
                let direction = if *side == Side::Client { "I" } else { "O" };
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                format!("{direction} {hex}\n")
            })
            .collect();
        let text = dir.join(format!("{name}.txt"));
        let pcap = dir.join(format!("{name}.pcapng"));
        std::fs::write(&text, dump).expect("write the hex dump");
        let ports = format!("{client_port},{server_port}");
        let output = run_tool(
            "text2pcap",
            &[
                "-q",
                "-D",
                "-r",
                r"^(?<dir>[IO])\s(?<data>[0-9a-fA-F]+)$",
                "-4",
                "127.0.0.1,127.0.0.2",
                "-T",
                &ports,
                text.to_str().expect("UTF-8 path"),
                pcap.to_str().expect("UTF-8 path"),
            ],
        );
        assert!(
            output.status.success(),
            "text2pcap failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        pcap
    }
}

/// The bytes of a real session: requests sent to `hftp serve` and its
/// answers, checked as they come; then laid out segment by segment (a
/// request one byte at a time, the CR LF of another split, answers cut in
/// the middle of status lines, pipelined requests and a raw slice of
/// 50000 bytes in 1000-byte segments) on the default port 19500.
#[test]
#[ignore = "full tier: needs tshark (apt-get install tshark)"]
fn byte_exact_segments_are_reassembled() {
    let dir = served_dir();
    let server = Server::builder(dir.path()).start();
    let big = big_file();
    let slice = &big[1000..51000];

    let first_request: &[u8] = b"get_metadata hola.txt\r\n";
    let first_answer: &[u8] = b"0 OK\r\n32\r\n";
    let pipelined: &[u8] =
        b"get_file_listing\r\nget_slice hola.txt 0 5\r\nget_slice big.bin 1000 50000 raw\r\nhelp\r\n";
    let base64_answer: &[u8] = b"0 OK\r\nUXVlIGM=\r\n";
    let raw_answer = raw_slice_answer(slice);
    let pipelined_answers = [LISTING, base64_answer, &raw_answer, HELP].concat();

    let mut stream = support::connect(server.addr(), TOOL_TIMEOUT);
    exchange(&mut stream, first_request, first_answer);
    exchange(&mut stream, pipelined, &pipelined_answers);
    stream.write_all(b"quit\r\n").expect("send quit");
    read_to_close(&mut stream, b"0 OK\r\n");

    let mut segments = Segments::default();
    let single_bytes: Vec<&[u8]> = first_request.chunks(1).collect();
    segments.send(Side::Client, &single_bytes);
    segments.send(Side::Server, &[b"0 O", b"K\r", b"\n3", b"2\r\n"]);
    // The pipelined requests: three whole, the fourth cut in two.
    let cut = pipelined.len() - 4;
    segments.send(Side::Client, &[&pipelined[..cut], &pipelined[cut..]]);
    segments.send_in_pieces(Side::Server, &pipelined_answers, 1000);
    segments.send(Side::Client, &[b"qu", b"it\r", b"\n"]);
    segments.send(Side::Server, &[b"0 OK\r\n"]);
    let work = tempfile::tempdir().expect("tempdir");
    let pcap = segments.write_pcap(work.path(), "segments", 40000, 19500);

    // No Decode As: the dissector is registered on 19500.
    let pdus = dissect_both_ways(&pcap, None);
    let summary: Vec<(u64, &str)> = pdus
        .iter()
        .map(|p| {
            (
                p.frame,
                p.field("hftp.command")
                    .or(p.field("hftp.status"))
                    .unwrap_or("?"),
            )
        })
        .collect();

    // Where each PDU must be dissected: in the frame carrying its last byte.
    let client = |end: usize| segments.frame_ending(Side::Client, end);
    let server_end = |end: usize| segments.frame_ending(Side::Server, end);
    let first_end = first_request.len();
    let listing_end = first_end + "get_file_listing\r\n".len();
    let base64_end = listing_end + "get_slice hola.txt 0 5\r\n".len();
    let raw_end = base64_end + "get_slice big.bin 1000 50000 raw\r\n".len();
    let help_end = raw_end + "help\r\n".len();
    let quit_end = help_end + "quit\r\n".len();
    let answers = [
        first_answer.len(),
        LISTING.len(),
        base64_answer.len(),
        raw_answer.len(),
        HELP.len(),
        b"0 OK\r\n".len(),
    ];
    let answer_ends: Vec<usize> = answers
        .iter()
        .scan(0, |end, len| {
            *end += len;
            Some(*end)
        })
        .collect();
    let expected: Vec<(u64, &str)> = vec![
        (client(first_end), "get_metadata"),
        (server_end(answer_ends[0]), "0"),
        (client(listing_end), "get_file_listing"),
        (client(base64_end), "get_slice"),
        (client(raw_end), "get_slice"),
        (client(help_end), "help"),
        (server_end(answer_ends[1]), "0"),
        (server_end(answer_ends[2]), "0"),
        (server_end(answer_ends[3]), "0"),
        (server_end(answer_ends[4]), "0"),
        (client(quit_end), "quit"),
        (server_end(answer_ends[5]), "0"),
    ];
    assert_eq!(summary, expected, "PDUs (frame, command or status)");
    // The one-byte request is whole in the frame of its 23rd byte, the
    // split status line in the frame of its last byte.
    assert_eq!(expected[0].0, 23);
    assert_eq!(expected[1].0, 27);

    let one_byte_request = &pdus[0];
    assert_eq!(
        one_byte_request.get("hftp.request"),
        "get_metadata hola.txt"
    );
    assert_eq!(one_byte_request.get("hftp.name"), "hola.txt");
    assert_eq!(pdus[1].get("hftp.file_size"), "32");
    assert_eq!(pdus[1].get("hftp.request_in"), "23");
    assert_eq!(one_byte_request.get("hftp.response_in"), "27");
    // Pipelined: each answer names its own request.
    for (request_at, answer_at) in [(2, 6), (3, 7), (4, 8), (5, 9), (10, 11)] {
        assert_eq!(
            pdus[answer_at].get("hftp.response_to"),
            pdus[request_at].get("hftp.request")
        );
        assert_eq!(
            pdus[answer_at].get("hftp.request_in"),
            pdus[request_at].frame.to_string()
        );
        assert_eq!(
            pdus[request_at].get("hftp.response_in"),
            pdus[answer_at].frame.to_string()
        );
    }
    assert_eq!(pdus[6].all("hftp.listing.name"), ["big.bin", "hola.txt"]);
    assert_eq!(pdus[7].get("hftp.base64"), "UXVlIGM=");
    assert_eq!(pdus[7].get("hftp.decoded_length"), "5");
    assert_eq!(pdus[7].get("hftp.decoded"), hex(b"Que c"));
    assert_eq!(pdus[4].get("hftp.raw"), "1");
    assert_eq!(pdus[4].get("hftp.offset"), "1000");
    assert_eq!(pdus[4].get("hftp.size"), "50000");
    let raw = &pdus[8];
    assert_eq!(raw.get("hftp.content_length"), "50000");
    assert_eq!(raw.get("hftp.body_length"), "50000");
    assert!(raw.get("hftp.body") == hex(slice), "the raw body differs");
    let spanned = segments.segments_spanned(Side::Server, answer_ends[2], answer_ends[3]);
    assert!(spanned > 50, "the raw slice spans {spanned} segments");
    assert_eq!(
        raw.segments,
        Some(spanned),
        "segments reassembled for the raw slice"
    );
    assert_eq!(pdus[9].get("hftp.help.count"), "5");
    for pdu in &pdus {
        assert!(pdu.experts.is_empty(), "unexpected expert info: {pdu:#?}");
    }
}

/// A fatal error, byte exact: the request with a bare LF, the bytes after
/// it (which the server never reads, in two segments), the fatal answer;
/// on a port other than 19500, with Decode As.
#[test]
#[ignore = "full tier: needs tshark (apt-get install tshark)"]
fn fatal_error_is_expert_info() {
    let dir = served_dir();
    let server = Server::builder(dir.path()).start();
    let request: &[u8] = b"get_metadata hola.txt\nget_metadata hola.txt\r\n";
    let mut stream = support::connect(server.addr(), TOOL_TIMEOUT);
    stream.write_all(request).expect("send a bare LF");
    read_to_close(&mut stream, b"100 BAD EOL\r\n");

    let mut segments = Segments::default();
    segments.send(Side::Client, &[&request[..28], &request[28..]]);
    segments.send(Side::Server, &[b"100 BAD EOL\r\n"]);
    let work = tempfile::tempdir().expect("tempdir");
    let pcap = segments.write_pcap(work.path(), "fatal", 40001, 20000);
    let pdus = dissect_both_ways(&pcap, Some(20000));

    assert_eq!(pdus.len(), 4, "{pdus:#?}");
    let fatal_request = &pdus[0];
    assert_eq!(fatal_request.frame, 1);
    assert_eq!(fatal_request.get("hftp.command"), "get_metadata");
    assert_eq!(fatal_request.get("hftp.request"), "get_metadata hola.txt");
    assert_eq!(fatal_request.expert_ids(), ["hftp.fatal_request"]);
    assert!(fatal_request
        .expert("hftp.fatal_request")
        .contains("an LF without a CR before it (100 BAD EOL)"));
    assert_eq!(fatal_request.get("hftp.response_in"), "3");
    for (pdu, frame, bytes) in [
        (&pdus[1], 1, &request[22..28]),
        (&pdus[2], 2, &request[28..]),
    ] {
        assert_eq!(pdu.frame, frame);
        assert_eq!(pdu.get("hftp.ignored"), hex(bytes));
        assert_eq!(pdu.expert_ids(), ["hftp.ignored"]);
    }
    let answer = &pdus[3];
    assert_eq!(answer.frame, 3);
    assert_eq!(answer.get("hftp.status"), "100");
    assert_eq!(answer.get("hftp.status_text"), "BAD EOL");
    assert_eq!(answer.get("hftp.request_in"), "1");
    assert_eq!(answer.expert_ids(), ["hftp.fatal"]);
    assert_eq!(
        answer.expert("hftp.fatal"),
        "Fatal error 100 BAD EOL: the server closes the connection"
    );
}

/// What a careless server might answer (bytes written by hand, since
/// `hftp serve` never answers this way): each mistake is expert info.
#[test]
#[ignore = "full tier: needs tshark (apt-get install tshark)"]
fn a_faulty_server_is_marked() {
    let exchanges: [(&[u8], &[u8]); 5] = [
        (b"get_slice hola.txt 0 5\r\n", b"0 ok\r\nUXVlIGM\r\n"),
        (
            b"get_slice hola.txt 0 5 raw\r\n",
            b"0 OK\r\nContent-Length: 4\r\n\r\nQue ",
        ),
        (b"get_metadata hola.txt\r\n", b"0 OK\r\nabc\r\n"),
        (b"get_metadata ../x\r\n", b"0 OK\r\n3\r\n"),
        (b"quit\r\n", b"0 OK\r\nmore"),
    ];
    let mut segments = Segments::default();
    for (request, answer) in exchanges {
        segments.send(Side::Client, &[request]);
        segments.send(Side::Server, &[answer]);
    }
    let work = tempfile::tempdir().expect("tempdir");
    let pcap = segments.write_pcap(work.path(), "faulty", 40002, 19500);
    let pdus = dissect_both_ways(&pcap, None);
    let experts: Vec<(u64, Vec<&str>)> = pdus
        .iter()
        .map(|p| (p.frame, p.experts.iter().map(|(_, m)| m.as_str()).collect()))
        .collect();
    assert_eq!(
        experts,
        [
            (1, vec![]),
            (
                2,
                vec![
                    "Status 0 must read \"OK\", not \"ok\"",
                    "Not standard base64 on one line (RFC 4648 alphabet, = padding, length a multiple of 4)",
                ]
            ),
            (3, vec![]),
            (4, vec!["Content-Length is 4, the request asked for 5"]),
            (5, vec![]),
            (6, vec!["File size \"abc\" is not a decimal number"]),
            (
                7,
                vec!["Rejected: \"../x\" is not a valid file name (201 INVALID ARGUMENTS FOR COMMAND)"]
            ),
            (
                8,
                vec!["0 OK to a request the server must reject: \"../x\" is not a valid file name (201 INVALID ARGUMENTS FOR COMMAND)"]
            ),
            (9, vec![]),
            (10, vec![]),
            (
                10,
                vec!["4 bytes sent after the answer to quit: the server must close the connection"]
            ),
        ],
        "{pdus:#?}"
    );
    assert_eq!(pdus[3].get("hftp.body_length"), "4");
    assert_eq!(pdus[10].get("hftp.after_close"), hex(b"more"));
}

/// Installed as docs/wireshark.md says (copied into the personal Lua
/// plugin folder), the script loads without a word on stderr, registers
/// the fields the documentation names, and dissects port 19500 by itself.
#[test]
#[ignore = "full tier: needs tshark (apt-get install tshark)"]
fn installed_as_a_personal_plugin() {
    let home = tempfile::tempdir().expect("tempdir");
    let plugins = home.path().join(".local/lib/wireshark/plugins");
    std::fs::create_dir_all(&plugins).expect("create the plugin folder");
    std::fs::copy(lua_script(), plugins.join("hftp.lua")).expect("install hftp.lua");

    let fields = tshark_in(&["-G", "fields"], Some(home.path()));
    let names: BTreeSet<&str> = fields
        .lines()
        .filter_map(|line| line.split('\t').nth(2))
        .collect();
    for name in [
        "hftp",
        "hftp.command",
        "hftp.argument",
        "hftp.raw",
        "hftp.status",
        "hftp.status_text",
        "hftp.listing.name",
        "hftp.file_size",
        "hftp.base64_length",
        "hftp.decoded_length",
        "hftp.content_length",
        "hftp.body",
        "hftp.body_length",
        "hftp.request_in",
        "hftp.response_in",
    ] {
        assert!(names.contains(name), "tshark -G fields has no {name}");
    }

    let mut segments = Segments::default();
    segments.send(Side::Client, &[b"get_metadata hola.txt\r\n"]);
    segments.send(Side::Server, &[b"0 OK\r\n32\r\n"]);
    let pcap = segments.write_pcap(home.path(), "plugin", 40003, 19500);
    let pcap = pcap.to_str().expect("UTF-8 path");
    let columns = tshark_in(
        &[
            "-r",
            pcap,
            "-T",
            "fields",
            "-e",
            "_ws.col.Protocol",
            "-e",
            "_ws.col.Info",
        ],
        Some(home.path()),
    );
    assert_eq!(
        columns,
        "HFTP\tRequest: get_metadata hola.txt\nHFTP\tResponse: 0 OK (size 32)\n"
    );
}

/// Empty slices in both modes, a base64 slice of 100000 bytes (awaited by
/// its expected length) and a raw one, in 1000-byte segments; then the same
/// capture with a reassembly limit below their sizes: the slices are shown
/// a segment at a time, and the answers after them still match.
#[test]
#[ignore = "full tier: needs tshark (apt-get install tshark)"]
fn empty_and_large_slices_and_the_reassembly_limit() {
    let dir = served_dir();
    let server = Server::builder(dir.path()).start();
    let big = big_file();
    let requests: &[u8] = b"get_slice hola.txt 32 0 raw\r\nget_slice hola.txt 32 0\r\n\
get_slice big.bin 0 100000\r\nget_slice big.bin 0 3000 raw\r\nquit\r\n";
    let base64 = base64_simd::STANDARD.encode_to_string(&big[..100_000]);
    let answers = [
        b"0 OK\r\nContent-Length: 0\r\n\r\n".as_slice(),
        b"0 OK\r\n\r\n",
        &[b"0 OK\r\n", base64.as_bytes(), b"\r\n"].concat(),
        &raw_slice_answer(&big[..3000]),
        b"0 OK\r\n",
    ];
    let mut stream = support::connect(server.addr(), TOOL_TIMEOUT);
    stream.write_all(requests).expect("send the requests");
    read_to_close(&mut stream, &answers.concat());

    let mut segments = Segments::default();
    segments.send(Side::Client, &[requests]);
    segments.send_in_pieces(Side::Server, &answers.concat(), 1000);
    let work = tempfile::tempdir().expect("tempdir");
    let pcap = segments.write_pcap(work.path(), "slices", 40004, 19500);

    let pdus = dissect_both_ways(&pcap, None);
    assert_eq!(pdus.len(), 10, "{pdus:#?}");
    let responses = &pdus[5..];
    assert_eq!(responses[0].get("hftp.content_length"), "0");
    assert_eq!(responses[0].get("hftp.body_length"), "0");
    assert_eq!(responses[1].get("hftp.base64_length"), "0");
    assert_eq!(responses[1].get("hftp.decoded_length"), "0");
    assert_eq!(responses[2].get("hftp.base64_length"), "133336");
    assert_eq!(responses[2].get("hftp.decoded_length"), "100000");
    assert!(
        responses[2].get("hftp.decoded") == hex(&big[..100_000]),
        "the decoded slice differs"
    );
    assert!(responses[2].segments.is_some_and(|n| n > 100));
    assert_eq!(responses[3].get("hftp.body_length"), "3000");
    assert_eq!(responses[4].get("hftp.response_to"), "quit");
    for pdu in &pdus {
        assert!(pdu.experts.is_empty(), "unexpected expert info: {pdu:#?}");
    }

    // A limit of 2000 bytes: the two large slices come in parts.
    let limited = dissect_both_ways_with(&pcap, None, &["-o", "hftp.max_body:2000"]);
    let parts_of = |index: &str| -> usize {
        limited
            .iter()
            .filter(|p| p.field("hftp.response_number") == Some(index))
            .flat_map(|p| p.all("hftp.body_part"))
            .map(|bytes| bytes.split(':').count())
            .sum()
    };
    assert_eq!(
        parts_of("3"),
        base64.len() + 2,
        "the base64 line and its CR LF"
    );
    assert_eq!(parts_of("4"), 3000);
    let heads: Vec<&Pdu> = limited
        .iter()
        .filter(|p| p.field("hftp.status").is_some())
        .collect();
    assert_eq!(heads.len(), 5);
    for head in &heads[2..4] {
        assert_eq!(head.expert_ids(), ["hftp.not_reassembled"], "{head:#?}");
    }
    assert_eq!(heads[3].get("hftp.content_length"), "3000");
    assert_eq!(heads[4].get("hftp.response_to"), "quit");
    assert_eq!(heads[4].get("hftp.response_number"), "5");
}

// ---------------------------------------------------------------------------
// HFTP over TLS, decrypted with a key log
// ---------------------------------------------------------------------------

/// One write of a session and the exact answer it gets.
type Step = (Vec<u8>, Vec<u8>);

/// The session of the TLS test, run in clear and over TLS 1.3: a listing,
/// a size, a base64 slice and a raw one each larger than a TLS record
/// (16 KiB), three requests pipelined in one write, and quit, after which
/// the server closes.
fn tls_script(big: &[u8]) -> Vec<Step> {
    let base64 = base64_simd::STANDARD.encode_to_string(&big[..20_000]);
    vec![
        (b"get_file_listing\r\n".to_vec(), LISTING.to_vec()),
        (
            b"get_metadata hola.txt\r\n".to_vec(),
            b"0 OK\r\n32\r\n".to_vec(),
        ),
        (
            b"get_slice big.bin 0 20000\r\n".to_vec(),
            [b"0 OK\r\n", base64.as_bytes(), b"\r\n"].concat(),
        ),
        (
            b"get_slice big.bin 1000 50000 raw\r\n".to_vec(),
            raw_slice_answer(&big[1000..51_000]),
        ),
        (
            b"get_metadata hola.txt\r\nget_slice hola.txt 0 5 raw\r\nget_metadata nada.txt\r\n"
                .to_vec(),
            b"0 OK\r\n32\r\n0 OK\r\nContent-Length: 5\r\n\r\nQue c202 FILE NOT FOUND\r\n".to_vec(),
        ),
        (b"quit\r\n".to_vec(), b"0 OK\r\n".to_vec()),
    ]
}

/// The short session of TLS 1.2 (without ALPN).
fn tls12_script() -> Vec<Step> {
    vec![
        (
            b"get_metadata hola.txt\r\n".to_vec(),
            b"0 OK\r\n32\r\n".to_vec(),
        ),
        (b"quit\r\n".to_vec(), b"0 OK\r\n".to_vec()),
    ]
}

/// Runs `script` in clear over one connection, checking every answer; the
/// last one ends with the server closing.
fn run_in_clear(server: SocketAddr, script: &[Step]) {
    let mut stream = support::connect(server, TOOL_TIMEOUT);
    let ((last, last_answer), steps) = script.split_last().expect("a script");
    for (request, answer) in steps {
        exchange(&mut stream, request, answer);
    }
    stream.write_all(last).expect("send the last request");
    read_to_close(&mut stream, last_answer);
}

/// `openssl s_client` as an HFTP client over TLS: it trusts the test CA
/// and checks that the server's certificate names 127.0.0.1, writes the
/// session's keys to a key log (`-keylogfile`: the NSS format the hftp
/// client writes to `SSLKEYLOGFILE`), and is fed a script one step at a
/// time, each answer read before the next request is written (so that
/// each step travels in TLS records of its own, as in the plain session).
struct SClient {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<Vec<u8>>,
    received: Vec<u8>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl SClient {
    fn start(server: SocketAddr, pki: &Pki, keylog: &Path, args: &[&str]) -> SClient {
        let openssl = tools::require("openssl", "apt-get install openssl");
        let mut command = Command::new(openssl);
        command
            .arg("s_client")
            .arg("-connect")
            .arg(server.to_string())
            .arg("-CAfile")
            .arg(pki.file("ca.pem"))
            .args(["-verify_return_error", "-verify_ip", "127.0.0.1"])
            .arg("-keylogfile")
            .arg(keylog)
            // The server's bytes alone on stdout, the end of stdin does not
            // end the connection, and no line is taken for a command.
            .args(["-quiet", "-nocommands"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = support::tied::spawn(command)
            .unwrap_or_else(|e| panic!("cannot run openssl s_client: {e}"));
        let mut pipe = child.stdout.take().expect("piped");
        let (chunks, stdout) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 || chunks.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }),
            collect(child.stderr.take().expect("piped"), Arc::clone(&stderr)),
        ];
        SClient {
            stdin: child.stdin.take(),
            child,
            stdout,
            received: Vec::new(),
            stderr,
            readers,
        }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The next `len` bytes from the server (fewer if the connection ends
    /// first).
    fn read(&mut self, len: usize) -> Vec<u8> {
        let deadline = Instant::now() + TOOL_TIMEOUT;
        while self.received.len() < len {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(wait) {
                Ok(chunk) => self.received.extend_from_slice(&chunk),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "s_client got {} of {len} bytes within {TOOL_TIMEOUT:?}; its stderr:\n{}",
                    self.received.len(),
                    self.stderr()
                ),
            }
        }
        let n = len.min(self.received.len());
        self.received.drain(..n).collect()
    }

    fn write(&mut self, request: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(request)
            .and_then(|()| stdin.flush())
            .expect("write to s_client's stdin");
    }

    fn exchange(&mut self, request: &[u8], expected: &[u8]) {
        self.write(request);
        let answer = self.read(expected.len());
        assert!(
            answer == expected,
            "over TLS the server answered {:?} to {:?}; s_client's stderr:\n{}",
            String::from_utf8_lossy(&answer),
            String::from_utf8_lossy(request),
            self.stderr()
        );
    }

    /// Sends the last request and reads until the server closes: the rest
    /// must be `expected`, and s_client must then exit cleanly.
    fn finish(mut self, request: &[u8], expected: &[u8]) {
        self.write(request);
        self.stdin = None;
        let rest = self.read(usize::MAX);
        assert_eq!(
            String::from_utf8_lossy(&rest),
            String::from_utf8_lossy(expected),
            "the end of the TLS session; s_client's stderr:\n{}",
            self.stderr()
        );
        let deadline = Instant::now() + TOOL_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for s_client") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "s_client did not exit after the server closed"
            );
            thread::sleep(Duration::from_millis(10));
        };
        for reader in self.readers.drain(..) {
            reader.join().expect("reader thread");
        }
        assert!(
            status.success(),
            "s_client failed ({status}):\n{}",
            self.stderr()
        );
    }
}

impl Drop for SClient {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

/// Runs `script` over TLS with `openssl s_client ARGS`, its keys logged to
/// `keylog`, checking every answer.
fn run_over_tls(server: SocketAddr, pki: &Pki, keylog: &Path, args: &[&str], script: &[Step]) {
    let mut client = SClient::start(server, pki, keylog, args);
    let ((last, last_answer), steps) = script.split_last().expect("a script");
    for (request, answer) in steps {
        client.exchange(request, answer);
    }
    client.finish(last, last_answer);
}

/// What one connection carried: each TCP payload with its sender.
type Packets = Vec<(Side, Vec<u8>)>;

/// The TCP payloads of every connection of `pcap` whose client sent
/// data, in capture order, each with its sender (the server is the side
/// on `server_port`); a retransmitted segment is kept once, and a gap in
/// either direction fails the test.
fn tcp_streams(pcap: &Path, server_port: u16) -> Vec<Packets> {
    let pcap = pcap.to_str().expect("UTF-8 path");
    let fields = tshark(&[
        "-r",
        pcap,
        "-Y",
        "tcp.len > 0",
        "-T",
        "fields",
        "-e",
        "tcp.stream",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.seq",
        "-e",
        "tcp.payload",
    ]);
    // Per stream: its packets, and the next sequence number of each side.
    let mut streams: BTreeMap<u64, (Packets, [u64; 2])> = BTreeMap::new();
    for line in fields.lines() {
        let columns: Vec<&str> = line.split('\t').collect();
        let [stream, source, seq, payload] = columns[..] else {
            panic!("tshark printed {line:?}, not four columns");
        };
        let stream: u64 = stream.parse().expect("tcp.stream");
        let side = if source.parse::<u16>().expect("tcp.srcport") == server_port {
            Side::Server
        } else {
            Side::Client
        };
        let seq: u64 = seq.parse().expect("tcp.seq");
        let hex: String = payload.chars().filter(|c| *c != ':').collect();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("tcp.payload in hex"))
            .collect();
        // Relative sequence numbers: each side's first byte is 1.
        let (packets, next) = streams
            .entry(stream)
            .or_insert_with(|| (Vec::new(), [1, 1]));
        let next = &mut next[side as usize];
        if seq + bytes.len() as u64 <= *next {
            continue;
        }
        assert_eq!(
            seq, *next,
            "stream {stream}: {side:?} bytes missing from the capture"
        );
        *next += bytes.len() as u64;
        packets.push((side, bytes));
    }
    streams
        .into_values()
        .map(|(packets, _)| packets)
        .filter(|packets| packets.iter().any(|(side, _)| *side == Side::Client))
        .collect()
}

/// `packets` laid out again: what each side sent in a row, in segments of
/// up to 60000 bytes, so that TLS records that travelled apart share a
/// segment (several whole answers in one frame).
fn coalesced(packets: &[(Side, Vec<u8>)]) -> Segments {
    let mut runs: Packets = Vec::new();
    for (side, bytes) in packets {
        match runs.last_mut() {
            Some((last, run)) if last == side => run.extend_from_slice(bytes),
            _ => runs.push((*side, bytes.clone())),
        }
    }
    let mut segments = Segments::default();
    for (side, run) in &runs {
        segments.send_in_pieces(*side, run, 60_000);
    }
    segments
}

/// Names and values: of fields, or of expert infos.
type Pairs = Vec<(String, String)>;

/// A PDU's fields without the frame numbers (`hftp.request_in`,
/// `hftp.response_in`), and its expert infos: what must not depend on how
/// the session travelled.
fn unframed(pdu: &Pdu) -> (Pairs, Pairs) {
    let fields = pdu
        .fields
        .iter()
        .filter(|(key, _)| key != "hftp.request_in" && key != "hftp.response_in")
        .cloned()
        .collect();
    (fields, pdu.experts.clone())
}

/// `pdus` show the session `plain` shows in clear: the same PDUs in the
/// same order, with the same fields and expert infos; and in `pdus` each
/// request and its answer name each other's frames.
fn assert_same_session(pdus: &[Pdu], plain: &[Pdu], what: &str) {
    let shown = |text: &str| {
        if text.len() > 120 {
            format!("{}... ({} characters)", &text[..120], text.len())
        } else {
            text.to_string()
        }
    };
    assert_eq!(
        pdus.len(),
        plain.len(),
        "{what}: {} PDUs, {} in clear: {pdus:#?}",
        pdus.len(),
        plain.len()
    );
    for (i, (pdu, clear)) in pdus.iter().zip(plain).enumerate() {
        let (fields, experts) = unframed(pdu);
        let (clear_fields, clear_experts) = unframed(clear);
        let lines = |fields: &[(String, String)]| -> Vec<String> {
            fields
                .iter()
                .map(|(key, value)| format!("{key} = {}", shown(value)))
                .collect()
        };
        assert!(
            fields == clear_fields,
            "{what}: PDU {i} (frame {}) differs from the session in clear (frame {}):\n{:#?}\nin clear:\n{:#?}",
            pdu.frame,
            clear.frame,
            lines(&fields),
            lines(&clear_fields)
        );
        assert_eq!(experts, clear_experts, "{what}: expert infos of PDU {i}");
    }
    let requests: Vec<&Pdu> = pdus.iter().filter(|p| p.is_request()).collect();
    let responses: Vec<&Pdu> = pdus.iter().filter(|p| p.is_response()).collect();
    assert_eq!(requests.len(), responses.len(), "{what}: {pdus:#?}");
    for (request, response) in requests.iter().zip(&responses) {
        assert_eq!(
            response.get("hftp.request_in"),
            request.frame.to_string(),
            "{what}"
        );
        assert_eq!(
            request.get("hftp.response_in"),
            response.frame.to_string(),
            "{what}"
        );
    }
}

/// The PDUs of `tls12_script`: a size and quit, their answers.
fn assert_tls12_session(pdus: &[Pdu], what: &str) {
    let shown: Vec<(&str, &str)> = pdus
        .iter()
        .map(|p| {
            p.field("hftp.request")
                .map(|line| ("request", line))
                .unwrap_or_else(|| ("status", p.get("hftp.status")))
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("request", "get_metadata hola.txt"),
            ("status", "0"),
            ("request", "quit"),
            ("status", "0")
        ],
        "{what}: {pdus:#?}"
    );
    assert_eq!(pdus[1].get("hftp.file_size"), "32", "{what}");
    assert_eq!(pdus[1].get("hftp.request_in"), pdus[0].frame.to_string());
    assert_eq!(pdus[3].get("hftp.response_to"), "quit", "{what}");
    for pdu in pdus {
        assert!(pdu.experts.is_empty(), "{what}: expert info in {pdu:#?}");
    }
}

/// A session with `hftp serve --tls-cert --tls-key`, captured live with
/// dumpcap while `openssl s_client` runs a script (TLS 1.3 with ALPN
/// `hftp`; then a short one in TLS 1.2 without ALPN), each writing a key
/// log:
///
/// - without the key log tshark sees TLS (ALPN `hftp`, application data)
///   and no HFTP, and no request or answer is in the capture in clear;
/// - with it (`-o tls.keylog_file:`), and no Decode As (TLS is found by its
///   handshake, HFTP by ALPN), every PDU and field is what the dissector
///   shows of the same script run in clear, captured the same way; the
///   slices larger than a TLS record are reassembled across records;
/// - the same TLS bytes laid out again on port 19500, several records to a
///   frame: the dissector found on the port hands the ClientHello to TLS,
///   and shows the same PDUs again (TLS 1.3 by ALPN, TLS 1.2 by TLS port
///   19500);
/// - live, the TLS 1.2 session is HFTP with Decode As on its TLS port.
#[test]
#[ignore = "full tier: needs tshark and openssl (apt-get install tshark openssl)"]
fn tls_session_is_decrypted_with_a_key_log() {
    let dir = served_dir();
    let big = big_file();
    let script = tls_script(&big);
    let work = tempfile::tempdir().expect("tempdir");

    // The script in clear: the reference.
    let plain = Server::builder(dir.path()).start();
    let plain_pcap = work.path().join("plain.pcapng");
    let mut capture = Capture::start(plain.addr().port());
    capture.sync(plain.addr());
    run_in_clear(plain.addr(), &script);
    capture.sync(plain.addr());
    capture.finish(&plain_pcap);
    let plain_pdus = dissect_both_ways(&plain_pcap, Some(plain.addr().port()));

    // The script over TLS.
    let pki = Pki::new();
    let server = Server::builder(dir.path())
        .arg("--tls-cert")
        .arg(pki.file("server.pem"))
        .arg("--tls-key")
        .arg(pki.file("server.key"))
        .start();
    let port = server.addr().port();
    let pcap = work.path().join("tls.pcapng");
    let keys13 = work.path().join("tls13.keys");
    let keys12 = work.path().join("tls12.keys");
    let mut capture = Capture::start(port);
    capture.sync(server.addr());
    let tls13 = ["-tls1_3", "-alpn", "hftp"];
    run_over_tls(server.addr(), &pki, &keys13, &tls13, &script);
    run_over_tls(server.addr(), &pki, &keys12, &["-tls1_2"], &tls12_script());
    capture.sync(server.addr());
    capture.finish(&pcap);

    // The two key log formats: TLS 1.3 traffic secrets, the TLS 1.2 master
    // secret; tshark reads them from one file.
    let keys13 = std::fs::read_to_string(&keys13).expect("the TLS 1.3 key log");
    let keys12 = std::fs::read_to_string(&keys12).expect("the TLS 1.2 key log");
    assert!(keys13.contains("CLIENT_TRAFFIC_SECRET_0 "), "{keys13}");
    assert!(keys12.contains("CLIENT_RANDOM "), "{keys12}");
    let keys = work.path().join("session.keys");
    std::fs::write(&keys, keys13 + &keys12).expect("write the key log");
    let keylog = format!("tls.keylog_file:{}", keys.display());

    // Without the key log: TLS, encrypted, no HFTP.
    let captured = std::fs::read(&pcap).expect("read the capture");
    for clear in [
        b"get_metadata hola.txt".as_slice(),
        b"Content-Length: 50000",
        &big[1000..1100],
    ] {
        assert!(
            !captured.windows(clear.len()).any(|w| w == clear),
            "the TLS capture holds {:?} in clear",
            String::from_utf8_lossy(clear)
        );
    }
    let undecrypted = dissect(&pcap, None, false, &[]);
    assert!(
        undecrypted.is_empty(),
        "HFTP without the keys: {undecrypted:#?}"
    );
    let pcap_path = pcap.to_str().expect("UTF-8 path");
    let tls = tshark(&[
        "-r",
        pcap_path,
        "-T",
        "fields",
        "-e",
        "tls.handshake.extensions_alpn_str",
        "-e",
        "tls.record.content_type",
    ]);
    let values: BTreeSet<&str> = tls.split(['\t', ',', '\n']).collect();
    assert!(
        values.contains("hftp") && values.contains("23"),
        "ALPN hftp and application data (23) expected: {values:?}"
    );

    // With the key log: the script as in clear.
    let pdus = dissect_both_ways_with(&pcap, None, &["-o", &keylog]);
    assert_same_session(&pdus, &plain_pdus, "TLS 1.3, live");
    let requests: Vec<&Pdu> = pdus.iter().filter(|p| p.is_request()).collect();
    let responses: Vec<&Pdu> = pdus.iter().filter(|p| p.is_response()).collect();
    let commands: Vec<&str> = requests.iter().map(|p| p.get("hftp.request")).collect();
    assert_eq!(
        commands,
        [
            "get_file_listing",
            "get_metadata hola.txt",
            "get_slice big.bin 0 20000",
            "get_slice big.bin 1000 50000 raw",
            "get_metadata hola.txt",
            "get_slice hola.txt 0 5 raw",
            "get_metadata nada.txt",
            "quit"
        ]
    );
    let statuses: Vec<&str> = responses.iter().map(|p| p.get("hftp.status")).collect();
    assert_eq!(statuses, ["0", "0", "0", "0", "0", "0", "202", "0"]);
    assert_eq!(
        responses[0].all("hftp.listing.name"),
        ["big.bin", "hola.txt"]
    );
    assert_eq!(responses[1].get("hftp.file_size"), "32");
    let base64 = responses[2];
    assert_eq!(base64.get("hftp.decoded_length"), "20000");
    assert!(
        base64.get("hftp.decoded") == hex(&big[..20_000]),
        "the decoded base64 slice differs"
    );
    let raw = responses[3];
    assert_eq!(raw.get("hftp.content_length"), "50000");
    assert!(
        raw.get("hftp.body") == hex(&big[1000..51_000]),
        "the raw body differs"
    );
    assert_eq!(responses[5].get("hftp.body"), hex(b"Que c"));
    // Reassembled across TLS records of 16 KiB at most.
    assert!(
        base64.records.is_some_and(|n| n >= 2),
        "26670 bytes of base64 come in 2 TLS records or more: {:?}",
        base64.records
    );
    assert!(
        raw.records.is_some_and(|n| n >= 4),
        "50000 bytes come in 4 TLS records or more: {:?}",
        raw.records
    );

    // The same bytes on port 19500, several TLS records to a frame.
    let streams = tcp_streams(&pcap, port);
    assert_eq!(streams.len(), 2, "the two TLS sessions carried data");
    let relaid = coalesced(&streams[0]).write_pcap(work.path(), "relaid13", 40010, 19500);
    let pdus = dissect_both_ways_with(&relaid, None, &["-o", &keylog]);
    assert_same_session(&pdus, &plain_pdus, "TLS 1.3 laid out again on 19500");
    let pipelined: Vec<&Pdu> = pdus.iter().filter(|p| p.is_response()).skip(4).collect();
    assert!(
        pipelined[..3].iter().all(|p| p.frame == pipelined[0].frame),
        "the three pipelined answers in one frame: {pipelined:#?}"
    );
    let relaid = coalesced(&streams[1]).write_pcap(work.path(), "relaid12", 40011, 19500);
    let pdus = dissect_both_ways_with(&relaid, None, &["-o", &keylog]);
    assert_tls12_session(&pdus, "TLS 1.2 laid out again on 19500");

    // Live, the TLS 1.2 session (no ALPN, not on 19500) is HFTP by Decode
    // As on its TLS port, as docs/wireshark.md says.
    let decode = format!("tls.port=={port},hftp");
    let pdus = dissect_both_ways_with(&pcap, None, &["-o", &keylog, "-d", &decode]);
    assert_eq!(pdus.len(), plain_pdus.len() + 4, "{pdus:#?}");
    assert_tls12_session(
        &pdus[plain_pdus.len()..],
        "TLS 1.2, live, -d tls.port==PORT,hftp",
    );
}

//! The fuzzer's requests, as proptest strategies sampled from a fixed seed:
//! the same requests on every run, so a failure is reproduced by running
//! the test again.
//!
//! A server function gets bodies built from its form's field names (missing,
//! extra, repeated, bracketed), with hostile values written in every way a
//! form body can be broken; a page gets hostile path parameters and query
//! strings. Both get wrong methods, odd content types and odd headers, and
//! the server gets paths no route has and raw requests an HTTP library
//! would not send.

use std::fmt;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::{BoxedStrategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// What a probe tries; the report counts probes per class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// A server function's fields: missing, extra, repeated, bracketed
    /// (`a[]=`), with hostile values (control and bidirectional characters,
    /// huge and empty values, numbers out of range, markup, injections).
    Fields,
    /// Invalid percent-escapes, escapes of bytes that are not UTF-8, raw
    /// bytes that are not UTF-8, in names and values.
    Encoding,
    /// Random bytes, separators only, an empty body.
    RandomBody,
    /// Values and bodies past the 64 KiB body limit.
    HugeBody,
    /// JSON, plain text, multipart, unknown, missing and broken content types.
    ContentType,
    /// GET, PUT, DELETE, … to a server function; POST, PUT, … to a page.
    WrongMethod,
    /// Plain HTML form posts (`Accept: text/html`) with odd referers.
    FormPost,
    /// Odd cookies, forwarded-for, request ids, conditional requests,
    /// cross-site markers, encodings.
    Headers,
    /// Page paths with hostile parameters and suffixes.
    PageParams,
    /// Hostile query strings, and forged form-post errors (`__err`).
    PageQuery,
    /// Paths no route has: dot segments, encoded slashes, unknown functions,
    /// long paths, the fixed endpoints with odd methods.
    OddPath,
    /// Over a raw connection: `CONNECT`, `*`, absolute-form targets, bytes
    /// that are not UTF-8, broken HTTP framing, a body that never comes.
    Raw,
    /// File uploads (multipart bodies) to the avatar route: pictures real,
    /// truncated, lying about their size, not pictures; hostile names and
    /// types; broken framing.
    Multipart,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    /// A session cookie of the right shape that names no session, or of a
    /// wrong shape.
    ForgedCookie,
    /// The fuzzing account's own session.
    SignedIn,
}

#[derive(Clone)]
pub struct Probe {
    pub class: Class,
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub identity: Identity,
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(300).collect();
        write!(
            f,
            "{:?} {} {} ({:?}) headers {:?} body[{}] {body:?}",
            self.class,
            self.method,
            self.target.chars().take(300).collect::<String>(),
            self.identity,
            self.headers
                .iter()
                .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
                .collect::<Vec<_>>(),
            self.body.len(),
        )
    }
}

/// A request written byte by byte.
#[derive(Clone)]
pub struct RawProbe {
    pub bytes: Vec<u8>,
    /// Broken HTTP framing: the server may close the connection without an
    /// answer (that is hyper refusing it, not a crash).
    pub may_close: bool,
}

impl fmt::Debug for RawProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = String::from_utf8_lossy(&self.bytes);
        write!(f, "{:?}", text.chars().take(300).collect::<String>())
    }
}

/// Samples strategies from one seeded generator.
pub struct Sampler(TestRunner);

impl Sampler {
    pub fn new(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
        Self(TestRunner::new_with_rng(Config::default(), rng))
    }

    pub fn sample<S: Strategy>(&mut self, strategy: &S, count: usize) -> Vec<S::Value> {
        (0..count)
            .map(|_| {
                strategy
                    .new_tree(&mut self.0)
                    .expect("strategies never reject")
                    .current()
            })
            .collect()
    }
}

/// The body limit (`hygiene::BODY_LIMIT_BYTES`).
const BODY_LIMIT: usize = 64 * 1024;

const SPECIAL_CHARS: &[char] = &[
    '\0',
    '\u{1}',
    '\t',
    '\n',
    '\r',
    '\u{b}',
    '\u{c}',
    '\u{1b}',
    '\u{7f}',
    '\u{85}',
    '\u{a0}',
    '\u{2028}',
    '\u{2029}',
    '\u{202a}',
    '\u{202b}',
    '\u{202c}',
    '\u{202d}',
    '\u{202e}',
    '\u{2066}',
    '\u{2067}',
    '\u{2068}',
    '\u{2069}',
    '\u{200b}',
    '\u{200c}',
    '\u{200d}',
    '\u{200e}',
    '\u{200f}',
    '\u{feff}',
    '\u{fffd}',
    '\u{fffe}',
    '\u{10ffff}',
    '\u{301}',
    '\u{130}',
    '\u{1e9e}',
    '\u{1c5}',
    '\u{3a3}',
    '\u{ff21}',
    '\u{1d400}',
    '\u{1f469}',
    '\u{e000}',
    '%',
    '&',
    '=',
    '+',
    '[',
    ']',
    ';',
    '#',
    '?',
    '/',
    '\\',
    '"',
    '\'',
    '<',
    '>',
    ' ',
    '@',
    '.',
    ':',
];

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "4294967296",
    "9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999999999",
    "1e3",
    "1.5",
    "NaN",
    "inf",
    "-0",
    "+1",
    " 1",
    "1 ",
    "0x10",
    "\u{663}",
    "\u{ff11}",
    "00000001",
];

const INJECTIONS: &[&str] = &[
    "' OR '1'='1",
    "'; DROP TABLE users; --",
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "${jndi:ldap://example.invalid/a}",
    "{{7*7}}",
    "../../../../etc/passwd",
    "javascript:alert(1)",
    "https://user:pw@example.com/",
    "https://[::1]:99999/",
    "http://%00/",
    "null",
    "[]",
    "{}",
    "true",
    "\\u0000",
    "%00",
    "__proto__",
];

/// Field names nobody's form has.
const WEIRD_NAMES: &[&str] = &[
    "",
    "[]",
    "a[",
    "]",
    "a[]",
    "a[0]",
    "a[b]",
    "a[][]",
    "a[b][c][d][e][f][g]",
    "__proto__",
    "constructor",
    "%5B%5D",
    "=",
    "&",
    ";",
    "\u{202e}",
    "a.b",
];

/// Values a form field may be given by someone who is not its form.
pub fn hostile_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => Just(String::new()),
        4 => "[a-z0-9_]{1,14}",
        2 => "[a-z0-9.]{1,10}@[a-z0-9-]{1,10}\\.[a-z]{2,4}",
        2 => "https?://[a-z0-9.-]{1,16}(:[0-9]{1,5})?/[a-zA-Z0-9/._~-]{0,24}",
        2 => "[ -~]{6,40}",
        3 => any::<String>(),
        3 => vec(prop_oneof![3 => select(SPECIAL_CHARS), 1 => any::<char>()], 1..40)
            .prop_map(String::from_iter),
        2 => select(NUMBERS).prop_map(str::to_owned),
        1 => select(INJECTIONS).prop_map(str::to_owned),
        1 => (select(&[101usize, 501, 2049, 5_000][..]), any::<char>())
            .prop_map(|(n, c)| c.to_string().repeat(n)),
    ]
    .boxed()
}

/// How a name or value is written into a url-encoded body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    /// Percent-encoded as a browser would.
    Proper,
    /// As it is: its `&`, `=`, `%` and `+` break the structure.
    Raw,
    /// An escape that is not one (`%`, `%g1`).
    Broken,
    /// An escape of bytes that are not UTF-8 (`%ff`, overlong `%c0%af`).
    NotUtf8,
    /// A raw byte that is not UTF-8: the body is not text.
    RawByte,
}

fn escape() -> impl Strategy<Value = Escape> {
    prop_oneof![
        14 => Just(Escape::Proper),
        2 => Just(Escape::Raw),
        1 => Just(Escape::Broken),
        1 => Just(Escape::NotUtf8),
        1 => Just(Escape::RawByte),
    ]
}

impl Escape {
    fn breaks_encoding(self) -> bool {
        matches!(self, Escape::Broken | Escape::NotUtf8 | Escape::RawByte)
    }

    fn write(self, out: &mut Vec<u8>, text: &str, position: usize) {
        if self == Escape::Raw {
            out.extend_from_slice(text.as_bytes());
            return;
        }
        let mut encoded = utf8_percent_encode(text, NON_ALPHANUMERIC)
            .to_string()
            .into_bytes();
        let insert: &[u8] = match self {
            Escape::Proper | Escape::Raw => b"",
            Escape::Broken => [&b"%"[..], b"%g1", b"%f", b"%%", b"%zz"][position % 5],
            Escape::NotUtf8 => [
                &b"%ff"[..],
                b"%fe",
                b"%c0%af",
                b"%ed%a0%80",
                b"%f4%90%80%80",
                b"%80",
                b"%e2%82",
            ][position % 7],
            Escape::RawByte => [&b"\xff"[..], b"\x80", b"\xc3"][position % 3],
        };
        // The encoded text is ASCII: any index is a boundary.
        let at = position % (encoded.len() + 1);
        encoded.splice(at..at, insert.iter().copied());
        out.extend_from_slice(&encoded);
    }
}

/// A url-encoded body of `fields` (name, value, how each is written).
fn form_body(fields: &[(String, String, Escape, Escape, usize)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (name, value, name_escape, value_escape, position)) in fields.iter().enumerate() {
        if i > 0 {
            body.push(b'&');
        }
        name_escape.write(&mut body, name, *position);
        body.push(b'=');
        value_escape.write(&mut body, value, position / 7);
    }
    body
}

/// The names a body carries: the function's own, each kept (mostly),
/// dropped, repeated or bracketed, plus some that are nobody's.
fn field_names(fields: Vec<String>, vocabulary: Vec<String>) -> BoxedStrategy<Vec<String>> {
    let stranger = prop_oneof![
        3 => select(vocabulary.clone()),
        2 => "[a-z_]{1,10}",
        1 => select(WEIRD_NAMES).prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    if fields.is_empty() {
        // A function without a form: its arguments are unknown here, so any
        // form field name of the app may be one of them.
        return vec(stranger, 0..5).boxed();
    }
    let own: Vec<BoxedStrategy<Vec<String>>> = fields
        .into_iter()
        .map(|field| {
            let bracketed = field.clone();
            prop_oneof![
                12 => Just(vec![field.clone()]),
                1 => Just(vec![]),
                1 => Just(vec![field.clone(), field.clone()]),
                1 => select(&["[]", "[0]", "[x]", "[][]", "[", "[a][b][c][d][e][f]"][..])
                    .prop_map(move |suffix| vec![format!("{bracketed}{suffix}")]),
            ]
            .boxed()
        })
        .collect();
    let extra = prop_oneof![4 => Just(vec![]), 1 => vec(stranger, 1..3)];
    (own, extra)
        .prop_map(|(own, extra)| own.into_iter().flatten().chain(extra).collect::<Vec<_>>())
        .prop_shuffle()
        .boxed()
}

type Field = (String, String, Escape, Escape, usize);

/// Names, each with a hostile value and a way of writing both.
fn fields(names: BoxedStrategy<Vec<String>>) -> BoxedStrategy<Vec<Field>> {
    names
        .prop_flat_map(|names| {
            let count = names.len();
            (
                Just(names),
                vec(
                    (
                        hostile_text(),
                        prop_oneof![9 => Just(Escape::Proper), 1 => escape()],
                        escape(),
                        any::<usize>(),
                    ),
                    count,
                ),
            )
        })
        .prop_map(|(names, values)| {
            names
                .into_iter()
                .zip(values)
                .map(|(name, (value, name_escape, value_escape, position))| {
                    (name, value, name_escape, value_escape, position)
                })
                .collect()
        })
        .boxed()
}

fn identity() -> impl Strategy<Value = Identity> {
    prop_oneof![
        4 => Just(Identity::Anonymous),
        1 => Just(Identity::ForgedCookie),
        3 => Just(Identity::SignedIn),
    ]
}

const FORM: &str = "application/x-www-form-urlencoded";

fn header(name: &str, value: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (name.to_owned(), value.into())
}

/// Headers a client may send that are not about the body.
fn odd_headers() -> BoxedStrategy<Vec<(String, Vec<u8>)>> {
    let one = prop_oneof![
        Just(header("cookie", "__Host-folio_session=")),
        Just(header(
            "cookie",
            "__Host-folio_session=zz; __Host-folio_session="
        )),
        "[ -~]{0,80}".prop_map(|v| header("cookie", v)),
        "[0-9a-f]{64}".prop_map(|v| header("cookie", format!("__Host-folio_session={v}"))),
        Just(header("cookie", b"a=\xff\xfe".to_vec())),
        "[ -~]{0,60}".prop_map(|v| header("x-forwarded-for", v)),
        Just(header(
            "x-forwarded-for",
            "::1, 999.1.1.1, [::ffff:1.2.3.4], unknown"
        )),
        "[ -~]{0,200}".prop_map(|v| header("x-request-id", v)),
        Just(header("x-request-id", "x".repeat(4000))),
        Just(header("sec-fetch-site", "cross-site")),
        Just(header("sec-fetch-site", "same-site")),
        Just(header("sec-fetch-site", b"\xffnone".to_vec())),
        Just(header("origin", "null")),
        Just(header("origin", "http://evil.example")),
        Just(header("if-none-match", "*")),
        Just(header("if-none-match", "W/\"alice-1\", \"\", ,,,")),
        "[ -~]{0,80}".prop_map(|v| header("if-none-match", v)),
        Just(header(
            "accept-encoding",
            "br;q=abc, gzip;q=2, *;q=-1, identity;q=0"
        )),
        "[ -~]{0,80}".prop_map(|v| header("accept-encoding", v)),
        Just(header("accept", "text/html;q=x, */*;q=0.1")),
        Just(header("user-agent", "x".repeat(8000))),
        Just(header("user-agent", b"\x80\xff agent".to_vec())),
        Just(header("range", "bytes=999999999-")),
        Just(header("content-encoding", "gzip")),
        Just(header("islands-router", "1")),
    ];
    vec(one, 1..4).boxed()
}

fn accept_and_referer() -> BoxedStrategy<Vec<(String, Vec<u8>)>> {
    let referer = prop_oneof![
        Just(None),
        Just(Some("http://127.0.0.1/signup".to_owned())),
        Just(Some(
            "http://127.0.0.1/signin?__path=%2Fapi%2Flogin&__err=x".to_owned()
        )),
        Just(Some("not a url".to_owned())),
        Just(Some("/relative/path".to_owned())),
        Just(Some("javascript:alert(1)".to_owned())),
        Just(Some("http://evil.example/".to_owned())),
        Just(Some(format!("http://127.0.0.1/{}", "a".repeat(4000)))),
        "[ -~]{0,60}".prop_map(Some),
    ];
    referer
        .prop_map(|referer| {
            let mut headers = vec![header(
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            )];
            headers.extend(referer.map(|r| header("referer", r)));
            headers
        })
        .boxed()
}

fn wrong_method_for_function() -> impl Strategy<Value = String> {
    select(
        &[
            "GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO",
        ][..],
    )
    .prop_map(str::to_owned)
}

/// Probes of one server function, whose form has `own_fields` (none when
/// no page has a form for it), among the app's `vocabulary` of field names.
pub fn function_probe(
    path: &'static str,
    own_fields: Vec<String>,
    vocabulary: Vec<String>,
) -> BoxedStrategy<Probe> {
    let names = field_names(own_fields, vocabulary);
    let post = move |class: Class,
                     body: Vec<u8>,
                     content_type: Option<Vec<u8>>,
                     headers: Vec<(String, Vec<u8>)>,
                     identity: Identity| {
        let mut all = Vec::new();
        all.extend(content_type.map(|ct| header("content-type", ct)));
        all.extend(headers);
        Probe {
            class,
            method: "POST".to_owned(),
            target: path.to_owned(),
            headers: all,
            body,
            identity,
        }
    };
    let form = || Some(FORM.as_bytes().to_vec());

    let by_fields = (fields(names.clone()), identity()).prop_map(move |(fields, identity)| {
        let broken = fields
            .iter()
            .any(|f| f.2.breaks_encoding() || f.3.breaks_encoding());
        let class = if broken {
            Class::Encoding
        } else {
            Class::Fields
        };
        post(class, form_body(&fields), form(), vec![], identity)
    });
    let random_body = (
        prop_oneof![
            3 => vec(any::<u8>(), 0..600),
            1 => select(&["", "&", "&&&", "=", "==", "=&=", "a", "a=b=c", ";", "%", "+", "a=%", "%%=%%"][..])
                .prop_map(|s| s.as_bytes().to_vec()),
        ],
        identity(),
    )
        .prop_map(move |(body, identity)| post(Class::RandomBody, body, form(), vec![], identity));
    let huge = (
        fields(names.clone()),
        prop_oneof![
            Just(BODY_LIMIT - 100),
            Just(BODY_LIMIT + 1),
            Just(4 * BODY_LIMIT),
        ],
        any::<bool>(),
    )
        .prop_map(move |(mut fields, size, random)| {
            let body = if random || fields.is_empty() {
                (0..size).map(|i| (i * 31 % 251) as u8).collect()
            } else {
                fields[0].1 = "x".repeat(size);
                fields[0].3 = Escape::Proper;
                form_body(&fields)
            };
            post(Class::HugeBody, body, form(), vec![], Identity::Anonymous)
        });
    let content_type = (
        fields(names.clone()),
        prop_oneof![
            Just(Some(b"application/json".to_vec())),
            Just(Some(b"text/plain".to_vec())),
            Just(Some(b"text/plain; charset=utf-8".to_vec())),
            Just(Some(b"multipart/form-data; boundary=fuzz".to_vec())),
            Just(Some(b"multipart/form-data".to_vec())),
            Just(Some(b"application/cbor".to_vec())),
            Just(Some(b"application/octet-stream".to_vec())),
            Just(Some(b"application/xml".to_vec())),
            Just(Some(b"x".to_vec())),
            Just(Some(b"".to_vec())),
            Just(Some(b";;".to_vec())),
            Just(Some(
                b"application/x-www-form-urlencoded, application/json".to_vec()
            )),
            Just(Some(b"APPLICATION/X-WWW-FORM-URLENCODED".to_vec())),
            Just(Some(
                b"application/x-www-form-urlencoded; charset=latin1".to_vec()
            )),
            Just(Some(b"application/x-www-form-urlencoded\xff".to_vec())),
            Just(None),
        ],
        0..3usize,
        identity(),
    )
        .prop_map(move |(fields, content_type, shape, identity)| {
            let body = match shape {
                0 => {
                    let object: serde_json::Map<String, serde_json::Value> = fields
                        .iter()
                        .map(|(n, v, ..)| (n.clone(), serde_json::Value::String(v.clone())))
                        .collect();
                    serde_json::to_vec(&object).unwrap()
                }
                1 => {
                    let mut body = Vec::new();
                    for (name, value, ..) in &fields {
                        body.extend_from_slice(
                            b"--fuzz\r\nContent-Disposition: form-data; name=\"",
                        );
                        body.extend_from_slice(name.as_bytes());
                        body.extend_from_slice(b"\"\r\n\r\n");
                        body.extend_from_slice(value.as_bytes());
                        body.extend_from_slice(b"\r\n");
                    }
                    body.extend_from_slice(b"--fuzz--\r\n");
                    body
                }
                _ => form_body(&fields),
            };
            post(Class::ContentType, body, content_type, vec![], identity)
        });
    let wrong_method = (
        fields(names.clone()),
        wrong_method_for_function(),
        any::<bool>(),
    )
        .prop_map(move |(fields, method, in_query)| {
            let body = form_body(&fields);
            let mut probe = post(
                Class::WrongMethod,
                vec![],
                form(),
                vec![],
                Identity::SignedIn,
            );
            probe.method = method;
            if in_query {
                probe.target = format!("{path}?{}", String::from_utf8_lossy(&body));
            } else {
                probe.body = body;
            }
            probe
        });
    let form_post = (fields(names.clone()), accept_and_referer(), identity()).prop_map(
        move |(fields, headers, identity)| {
            post(
                Class::FormPost,
                form_body(&fields),
                form(),
                headers,
                identity,
            )
        },
    );
    let odd_headers =
        (fields(names), odd_headers(), identity()).prop_map(move |(fields, headers, identity)| {
            post(
                Class::Headers,
                form_body(&fields),
                form(),
                headers,
                identity,
            )
        });
    prop_oneof![
        10 => by_fields,
        2 => random_body,
        1 => huge,
        3 => content_type,
        2 => wrong_method,
        2 => form_post,
        2 => odd_headers,
    ]
    .boxed()
}

/// A path parameter, written into a URL in one way or another.
fn path_parameter(usernames: Vec<String>) -> BoxedStrategy<String> {
    let encoded =
        (hostile_text(), escape(), any::<usize>()).prop_map(|(text, escape, position)| {
            let escape = if escape == Escape::RawByte {
                Escape::NotUtf8
            } else {
                escape
            };
            let mut out = Vec::new();
            escape.write(&mut out, &text, position);
            // A URL is text: raw bytes were mapped to escapes above.
            String::from_utf8_lossy(&out).into_owned()
        });
    prop_oneof![
        3 => select(usernames.clone()),
        1 => select(usernames).prop_map(|u| u.to_uppercase()),
        6 => encoded,
        1 => Just("a".repeat(3000)),
        1 => Just(String::new()),
    ]
    .boxed()
}

/// `route` (axum syntax) with each `{name}` or `{*name}` replaced.
fn fill(route: &str, value: &str) -> String {
    route
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                value
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn query() -> BoxedStrategy<String> {
    let pair = (
        prop_oneof![
            select(&["saved", "password_changed", "__err", "__path", "q", ""][..])
                .prop_map(str::to_owned),
            "[a-z_]{1,8}",
        ],
        hostile_text(),
        escape(),
        any::<usize>(),
    )
        .prop_map(|(name, value, escape, position)| {
            let escape = if escape == Escape::RawByte {
                Escape::NotUtf8
            } else {
                escape
            };
            let mut out = Vec::new();
            Escape::Proper.write(&mut out, &name, 0);
            out.push(b'=');
            escape.write(&mut out, &value, position);
            String::from_utf8_lossy(&out).into_owned()
        });
    use base64::engine::general_purpose::URL_SAFE;
    use base64::Engine;
    let forged_error = (
        select(
            &[
                "/api/login",
                "/api/register",
                "/api/update_profile",
                "/x",
                "",
            ][..],
        ),
        prop_oneof![
            vec(any::<u8>(), 0..60).prop_map(|bytes| URL_SAFE.encode(bytes)),
            select(
                &[
                    "\"BadRequest\"",
                    "\"Internal\"",
                    "{\"Validation\":{\"username\":\"<script>x</script>\"}}",
                    "{\"Conflict\":{\"current_version\":-1}}",
                    "{\"RateLimited\":{\"retry_after_secs\":18446744073709551615}}",
                    "{\"Transport\":\"\\u202e\"}",
                    "{\"Nope\":1}",
                    "null",
                ][..]
            )
            .prop_map(|json| URL_SAFE.encode(json)),
            "[ -~]{0,40}",
            Just("A".repeat(6000)),
        ],
    )
        .prop_map(|(path, error)| {
            let path = utf8_percent_encode(path, NON_ALPHANUMERIC);
            let error = utf8_percent_encode(&error, NON_ALPHANUMERIC);
            format!("__path={path}&__err={error}")
        });
    prop_oneof![
        4 => vec(pair, 1..5).prop_map(|pairs| pairs.join("&")),
        3 => forged_error,
        1 => Just(format!("q={}", "a".repeat(8000))),
        1 => Just("%".to_owned()),
        1 => Just("&&==&".to_owned()),
    ]
    .boxed()
}

/// Probes of one page route.
pub fn page_probe(route: String, usernames: Vec<String>) -> BoxedStrategy<Probe> {
    let get =
        |class: Class, target: String, headers: Vec<(String, Vec<u8>)>, identity: Identity| Probe {
            class,
            method: "GET".to_owned(),
            target,
            headers,
            body: Vec::new(),
            identity,
        };
    let html = || vec![header("accept", "text/html")];
    let suffix = || {
        prop_oneof![
            8 => Just(""),
            1 => Just("/"),
            1 => Just("/extra"),
            1 => Just("//"),
            1 => Just("/."),
            1 => Just("/%2e%2e"),
            1 => Just(";x=1"),
            1 => Just("%2f"),
        ]
    };
    let params = (path_parameter(usernames.clone()), suffix(), identity()).prop_map({
        let route = route.clone();
        move |(value, suffix, identity)| {
            let target = format!("{}{suffix}", fill(&route, &value));
            let target = if target.is_empty() {
                "/".to_owned()
            } else {
                target
            };
            get(Class::PageParams, target, html(), identity)
        }
    });
    let with_query = (select(usernames.clone()), query(), identity()).prop_map({
        let route = route.clone();
        move |(name, query, identity)| {
            get(
                Class::PageQuery,
                format!("{}?{query}", fill(&route, &name)),
                html(),
                identity,
            )
        }
    });
    let wrong_method = (
        select(usernames.clone()),
        select(&["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD"][..]),
        fields(field_names(vec![], vec!["username".into(), "bio".into()])),
        identity(),
    )
        .prop_map({
            let route = route.clone();
            move |(name, method, fields, identity)| Probe {
                class: Class::WrongMethod,
                method: method.to_owned(),
                target: fill(&route, &name),
                headers: vec![header("content-type", FORM), header("accept", "text/html")],
                body: form_body(&fields),
                identity,
            }
        });
    let headers = (select(usernames), odd_headers(), identity()).prop_map(
        move |(name, headers, identity)| {
            get(Class::Headers, fill(&route, &name), headers, identity)
        },
    );
    prop_oneof![
        4 => params,
        3 => with_query,
        1 => wrong_method,
        2 => headers,
    ]
    .boxed()
}

/// Probes of paths no route has, and of the fixed endpoints.
pub fn odd_path_probe(functions: Vec<&'static str>) -> BoxedStrategy<Probe> {
    let segment = prop_oneof![
        select(
            &[
                "..",
                ".",
                "%2e%2e",
                "%2E%2E",
                "%2f",
                "%5c",
                "",
                "pkg",
                "api",
                "u",
                "healthz",
                "readyz",
                "metrics",
                "favicon.svg",
                "%00",
                "%ff",
                ";jsessionid=x",
                "*",
                "~",
                "%20",
                "+",
                "index.html",
                "..%2f..%2fCargo.toml",
                "folio.js",
                "folio_bg.wasm",
                ".env",
                ".git",
            ][..]
        )
        .prop_map(str::to_owned),
        path_parameter(vec!["alice".into()]),
    ];
    let random_path = vec(segment, 0..6).prop_map(|segments| format!("/{}", segments.join("/")));
    let unknown_function = "[a-z_]{0,20}".prop_map(|name| format!("/api/{name}"));
    let function_suffix = (
        select(functions),
        select(&["/", "/x", "%20", ".json", "//", "?x=1"][..]),
    )
        .prop_map(|(path, suffix)| format!("{path}{suffix}"));
    let endpoint = (
        select(
            &[
                "/healthz",
                "/readyz",
                "/metrics",
                "/favicon.svg",
                "/pkg/folio.js",
                "/pkg/",
            ][..],
        ),
        prop_oneof![Just(String::new()), query().prop_map(|q| format!("?{q}"))],
    )
        .prop_map(|(path, query)| format!("{path}{query}"));
    let long = Just(format!("/{}", "a/".repeat(3000)));
    let target = prop_oneof![
        4 => random_path,
        2 => unknown_function,
        2 => function_suffix,
        3 => endpoint,
        1 => long,
    ];
    (
        target,
        select(
            &[
                "GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
            ][..],
        ),
        identity(),
    )
        .prop_map(|(target, method, identity)| Probe {
            class: Class::OddPath,
            method: method.to_owned(),
            target,
            headers: vec![header("content-type", FORM)],
            body: if method == "POST" {
                b"a=b".to_vec()
            } else {
                Vec::new()
            },
            identity,
        })
        .boxed()
}

fn raw(bytes: impl Into<Vec<u8>>, may_close: bool) -> RawProbe {
    RawProbe {
        bytes: bytes.into(),
        may_close,
    }
}

/// Requests written byte by byte: what an HTTP library would not send.
pub fn fixed_raw_probes() -> Vec<RawProbe> {
    vec![
        raw("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", false),
        raw("CONNECT 127.0.0.1:5432 HTTP/1.1\r\nHost: 127.0.0.1:5432\r\n\r\n", false),
        raw("OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false),
        raw("GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false),
        raw("POST * HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", false),
        raw("GET http://evil.example/u/alice HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false),
        raw("GET https://evil.example:99999/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", true),
        raw(&b"GET /u/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..], true),
        raw(&b"GET /u/al\x00ice HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..], true),
        raw("GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false),
        raw("GET /pkg/../../Cargo.toml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false),
        raw("GET /pkg/%2e%2e/%2e%2e/Cargo.toml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false),
        raw("GET //u/alice HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false),
        raw("GET /u/alice HTTP/1.0\r\n\r\n", false),
        raw("GET /u/alice HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n", false),
        raw("GET /u/alice HTTP/1.1\r\nConnection: close\r\n\r\n", false),
        raw("get /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", true),
        raw("POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\nConnection: close\r\n\r\nidentifier=alice&password=x", false),
        raw("POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close\r\n\r\n", true),
        raw("POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\nConnection: close\r\n\r\n", true),
        raw("POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd", true),
        raw("POST /api/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nusername=a\r\n0\r\n\r\n", true),
        raw("POST /api/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\nConnection: close\r\n\r\n3\r\na=b\r\n0\r\n\r\n", true),
        raw("POST /api/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\na=b\r\n0\r\n\r\n", false),
        raw("POST /api/login HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\nConnection: close\r\n\r\na=b", false),
        raw("GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\nConnection: close\r\n\r\n", true),
        raw(&b"GET /healthz HTTP/1.1\r\nHost: x\r\nN\xffme: v\r\nConnection: close\r\n\r\n"[..], true),
        raw(format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "a".repeat(70_000)), true),
        raw(format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n", "X-A: b\r\n".repeat(200)), true),
        raw(&b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n"[..], true),
        raw("GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", true),
        raw("GET /healthz\r\n\r\n", true),
        raw("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true),
        // A body that never comes: the client's mistake, not Folio's.
        raw("POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\nConnection: close\r\n\r\nidentifier=alice", false),
    ]
}

/// Request lines made of a method, a target and a version, each odd.
pub fn raw_probe(pages: Vec<String>) -> BoxedStrategy<RawProbe> {
    let methods = select(
        &[
            "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "G\u{e9}T", "X",
        ][..],
    );
    let targets = prop_oneof![
        select(pages).prop_map(|p| fill(&p, "alice").into_bytes()),
        vec(
            prop_oneof![0x21u8..0x7f, 0x80u8..=0xff, Just(b'/'), Just(b'%')],
            1..60
        )
        .prop_map(|mut t| {
            t.insert(0, b'/');
            t
        }),
        Just(b"*".to_vec()),
        Just(b"example.com:80".to_vec()),
        Just(b"http://127.0.0.1/u/alice".to_vec()),
    ];
    let versions = select(
        &[
            "HTTP/1.1",
            "HTTP/1.0",
            "HTTP/1.1",
            "HTTP/2.0",
            "HTTP/1.1 extra",
            "",
        ][..],
    );
    let generated = (methods, targets, versions).prop_map(|(method, target, version)| {
        let mut bytes = format!("{method} ").into_bytes();
        bytes.extend_from_slice(&target);
        bytes.extend_from_slice(
            format!(" {version}\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        raw(bytes, true)
    });
    generated.boxed()
}

/// A real picture of `side` pixels, as the fuzzer's only valid upload.
fn small_png(side: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::from_pixel(side, side, image::Rgb([200, 40, 40]))
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// Probes of the avatar upload with multipart bodies, browser-made and not.
/// `own_fields` are the names its form uses.
pub fn multipart_probe(path: &'static str, own_fields: Vec<String>) -> BoxedStrategy<Probe> {
    let png = small_png(3);
    let file = prop_oneof![
        3 => vec(any::<u8>(), 0..3000),
        3 => Just(png.clone()),
        1 => (0..png.len()).prop_map(move |cut| png[..cut].to_vec()),
        1 => Just(crate::support::pictures::png_claiming(60_000)),
        1 => Just(crate::support::pictures::png_claiming(8192)),
        1 => Just(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00".to_vec()),
        1 => Just(b"RIFF\x10\x00\x00\x00WEBPVP8L".to_vec()),
        1 => Just(b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>1</script></svg>".to_vec()),
        1 => Just(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec()),
        1 => Just(Vec::new()),
    ];
    let mut names = own_fields;
    names.push("avatar".to_owned());
    let name = prop_oneof![
        6 => Just("avatar".to_owned()),
        2 => select(names),
        1 => hostile_text(),
    ];
    let filename = prop_oneof![
        3 => Just("photo.png".to_owned()),
        1 => Just("../../etc/passwd".to_owned()),
        1 => Just("a\"b\r\nX-Injected: 1.png".to_owned()),
        1 => hostile_text(),
    ];
    let part_type = select(
        &[
            "image/png",
            "image/jpeg",
            "image/svg+xml",
            "text/html",
            "application/octet-stream",
            "",
            "image/png; charset=\u{0}",
        ][..],
    );
    (
        file,
        name,
        filename,
        part_type,
        0..7usize,
        identity(),
        any::<bool>(),
    )
        .prop_map(
            move |(file, name, filename, part_type, framing, identity, html)| {
                const BOUNDARY: &str = "----fuzz7d1f0c";
                let part = |name: &str, body: &[u8]| {
                    let mut out = format!(
                        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                         filename=\"{filename}\"\r\nContent-Type: {part_type}\r\n\r\n"
                    )
                    .into_bytes();
                    out.extend_from_slice(body);
                    out.extend_from_slice(b"\r\n");
                    out
                };
                let mut body = part(&name, &file);
                let mut content_type = format!("multipart/form-data; boundary={BOUNDARY}");
                match framing {
                    // Well formed.
                    0 | 1 => body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes()),
                    // No closing boundary.
                    2 => {}
                    // The header names another boundary.
                    3 => content_type = "multipart/form-data; boundary=other".to_owned(),
                    // No boundary at all.
                    4 => content_type = "multipart/form-data".to_owned(),
                    // Two files, then a text field.
                    5 => {
                        body.extend(part("avatar", &file));
                        body.extend_from_slice(
                            format!(
                                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--{BOUNDARY}--\r\n"
                            )
                            .as_bytes(),
                        );
                    }
                    // A part without its headers.
                    _ => {
                        body = format!("--{BOUNDARY}\r\n\r\n").into_bytes();
                        body.extend_from_slice(&file);
                        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
                    }
                }
                let accept = if html { "text/html" } else { "application/json" };
                Probe {
                    class: Class::Multipart,
                    method: "POST".to_owned(),
                    target: path.to_owned(),
                    headers: vec![
                        header("content-type", content_type),
                        header("accept", accept),
                    ],
                    body,
                    identity,
                }
            },
        )
        .boxed()
}

//! A small `--flag value` parser for the examples (no dependency needed).

use std::collections::BTreeMap;
use std::str::FromStr;

/// One accepted option: name (without `--`), default (`None` for a switch), help.
pub struct Opt {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub help: &'static str,
}

pub const fn opt(name: &'static str, default: &'static str, help: &'static str) -> Opt {
    Opt { name, default: Some(default), help }
}

pub const fn switch(name: &'static str, help: &'static str) -> Opt {
    Opt { name, default: None, help }
}

pub struct Args {
    values: BTreeMap<&'static str, String>,
    switches: Vec<&'static str>,
}

fn usage(program: &str, about: &str, opts: &[Opt]) -> String {
    let mut s = format!("{about}\n\nUsage: cargo run --release --example {program} -- [OPTIONS]\n\nOptions:\n");
    for o in opts {
        let arg = if o.default.is_some() { format!("--{} <V>", o.name) } else { format!("--{}", o.name) };
        let def = match o.default {
            Some(d) if !d.is_empty() => format!(" [default: {d}]"),
            _ => String::new(),
        };
        s.push_str(&format!("  {arg:<22} {}{def}\n", o.help));
    }
    s.push_str("  --help                 print this help\n");
    s
}

impl Args {
    /// Parses the process arguments; prints usage and exits on `--help` or a
    /// bad argument.
    pub fn parse(program: &str, about: &str, opts: &[Opt]) -> Args {
        let mut values = BTreeMap::new();
        let mut switches = Vec::new();
        for o in opts {
            if let Some(d) = o.default {
                values.insert(o.name, d.to_string());
            }
        }
        let fail = |msg: String| -> ! {
            eprintln!("error: {msg}\n\n{}", usage(program, about, opts));
            std::process::exit(2)
        };
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            if a == "--help" || a == "-h" {
                println!("{}", usage(program, about, opts));
                std::process::exit(0);
            }
            let Some(name) = a.strip_prefix("--") else { fail(format!("unexpected argument {a:?}")) };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            let Some(o) = opts.iter().find(|o| o.name == name) else { fail(format!("unknown option --{name}")) };
            if o.default.is_none() {
                switches.push(o.name);
                continue;
            }
            let v = match inline.or_else(|| it.next()) {
                Some(v) => v,
                None => fail(format!("--{name} needs a value")),
            };
            values.insert(o.name, v);
        }
        Args { values, switches }
    }

    /// The value of `--name`, parsed; exits with a message if it does not parse.
    pub fn get<T: FromStr>(&self, name: &str) -> T {
        let raw = self.values.get(name).unwrap_or_else(|| panic!("option --{name} is not declared"));
        raw.parse().unwrap_or_else(|_| {
            eprintln!("error: --{name}: cannot parse {raw:?}");
            std::process::exit(2)
        })
    }

    /// The value of `--name`, or `None` when it was left empty.
    pub fn get_opt(&self, name: &str) -> Option<String> {
        self.values.get(name).filter(|v| !v.is_empty()).cloned()
    }

    pub fn has(&self, name: &str) -> bool {
        self.switches.contains(&name)
    }
}

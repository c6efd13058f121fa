//! QEMU's option syntax as text: `key=value,key=value` fields, shared by the server's
//! transports (`-qmp`, `-chardev`, `-mon`) and the machine's command line.

/// Split QEMU's comma-separated option syntax into its fields, with QEMU's `,,` escape for
/// a literal comma (`-qmp`, `-chardev`, `-device`, `-drive`, … all use it).
pub fn split_options(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                parts.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_escape() {
        assert_eq!(split_options("a=1,,2,b"), ["a=1,2", "b"]);
        assert_eq!(split_options(""), [""]);
    }
}

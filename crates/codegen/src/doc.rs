//! QAPI doc comment text as rustdoc (Markdown).
//!
//! `@name` becomes `` `name` ``; indented blocks (rST literal blocks and QMP examples) become
//! fenced `text` blocks, so rustdoc neither reflows nor runs them; directives such as
//! `.. qmp-example::` and `.. note::` become a line of their own (`Example:`, `Note:`).

/// Markdown lines for one piece of doc text.
pub fn markdown(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut in_block = false;
    let mut block_indent = 0usize;
    let mut prev_blank = true;
    let mut prev_opens = false;
    for raw in text.lines() {
        let line = raw.trim_end();
        let indent = line.len() - line.trim_start().len();
        let blank = line.trim().is_empty();
        if in_block {
            if blank && block_indent > 0 {
                out.push(String::new());
                continue;
            }
            if !blank && indent >= block_indent {
                out.push(line[block_indent..].to_string());
                continue;
            }
            // Leaving the block: drop trailing blank lines inside it.
            while out.last().is_some_and(|l| l.is_empty()) {
                out.pop();
            }
            out.push("```".to_string());
            out.push(String::new());
            in_block = false;
            if blank {
                prev_blank = true;
                continue;
            }
        }
        if blank {
            out.push(String::new());
            prev_blank = true;
            continue;
        }
        let t = line.trim_start();
        if let Some(d) = directive(t) {
            if !prev_blank {
                out.push(String::new());
            }
            out.push(d);
            prev_blank = false;
            prev_opens = true;
            continue;
        }
        let opens_block = if indent > 0 {
            (prev_blank || prev_opens) && (prev_opens || looks_literal(t))
        } else {
            t.starts_with("-> ") || t.starts_with("<- ")
        };
        if opens_block {
            if out.last().is_some_and(|l| !l.is_empty()) {
                out.push(String::new());
            }
            out.push("```text".to_string());
            in_block = true;
            block_indent = indent;
            out.push(line[indent..].to_string());
            continue;
        }
        prev_opens = t.ends_with("::");
        let mut l = inline(t);
        if prev_opens {
            // rST's "text::" introduces a literal block: one colon in Markdown.
            l.pop();
        }
        out.push(l);
        prev_blank = false;
    }
    if in_block {
        while out.last().is_some_and(|l| l.is_empty()) {
            out.pop();
        }
        out.push("```".to_string());
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    while out.first().is_some_and(|l| l.is_empty()) {
        out.remove(0);
    }
    out
}

/// An indented line that is not simply a continued paragraph or list item.
fn looks_literal(t: &str) -> bool {
    t.starts_with("->") || t.starts_with("<-") || t.starts_with('{') || t.starts_with('(')
}

fn directive(t: &str) -> Option<String> {
    let rest = t.strip_prefix(".. ")?;
    let (name, arg) = rest.split_once("::")?;
    let title = match name.trim() {
        "qmp-example" => "Example:".to_string(),
        "note" => "Note:".to_string(),
        "caution" | "warning" => "Warning:".to_string(),
        "admonition" => format!("{}:", arg.trim()),
        other => {
            let mut c = other.chars();
            match c.next() {
                Some(f) => format!("{}{}:", f.to_ascii_uppercase(), c.as_str()),
                None => return None,
            }
        }
    };
    let arg = arg.trim();
    if arg.is_empty() || name.trim() == "admonition" {
        Some(title)
    } else {
        Some(format!("{title} {}", inline(arg)))
    }
}

/// `@name` as code; characters Markdown or rustdoc would misread, escaped.
pub fn inline(t: &str) -> String {
    let mut out = String::with_capacity(t.len() + 8);
    let b = t.as_bytes();
    let mut i = 0;
    while i < t.len() {
        let c = b[i];
        if c == b'@' {
            let start = i + 1;
            let mut j = start;
            while j < t.len() && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'-' | b'_')) {
                j += 1;
            }
            // A trailing '-' or '.' is punctuation.
            while j > start && b[j - 1] == b'-' {
                j -= 1;
            }
            if j > start {
                out.push('`');
                out.push_str(&t[start..j]);
                out.push('`');
                i = j;
                continue;
            }
        }
        match c {
            b'[' => out.push_str("\\["),
            b']' => out.push_str("\\]"),
            b'<' => out.push_str("&lt;"),
            b'>' => out.push_str("&gt;"),
            _ => {
                let ch = t[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
                continue;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_are_fenced() {
        let text = "Query the block devices.\n\n.. qmp-example::\n\n    -> { \"execute\": \"query-block\" }\n    <- { \"return\": [] }\n\nSee @device.";
        let md = markdown(text);
        assert_eq!(
            md,
            vec![
                "Query the block devices.",
                "",
                "Example:",
                "",
                "```text",
                "-> { \"execute\": \"query-block\" }",
                "<- { \"return\": [] }",
                "```",
                "",
                "See `device`.",
            ]
        );
    }

    #[test]
    fn legacy_examples_are_fenced() {
        let md = markdown("Example:\n\n-> { \"execute\": \"stop\" }\n<- { \"return\": {} }");
        assert_eq!(
            md,
            vec![
                "Example:",
                "",
                "```text",
                "-> { \"execute\": \"stop\" }",
                "<- { \"return\": {} }",
                "```"
            ]
        );
    }
}

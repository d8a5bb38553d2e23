use super::*;
use proptest::prelude::*;

fn sp(line: u32, col: u32) -> Span {
    Span::new(line, col)
}

/// The tree without positions, for comparing parses of differently laid-out text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    name: String,
    args: Vec<String>,
    block: Option<Vec<Shape>>,
}

fn shape(ds: &[Directive]) -> Vec<Shape> {
    ds.iter()
        .map(|d| Shape {
            name: d.name.clone(),
            args: d.args.iter().map(|a| a.value.clone()).collect(),
            block: d.block.as_deref().map(shape),
        })
        .collect()
}

fn err(text: &str) -> (String, Span) {
    let e = parse(text).expect_err("text should not parse");
    (e.to_string(), e.span)
}

#[test]
fn nested_blocks_with_positions() {
    let text = "rtmp {\n    server {\n        listen 1935;\n    }\n}\n";
    let tree = parse(text).unwrap();
    assert_eq!(tree.len(), 1);
    let rtmp = &tree[0];
    assert_eq!((rtmp.name.as_str(), rtmp.span), ("rtmp", sp(1, 1)));
    let server = &rtmp.block.as_ref().unwrap()[0];
    assert_eq!(server.name_span, sp(2, 5));
    let listen = &server.block.as_ref().unwrap()[0];
    assert_eq!(listen.name, "listen");
    assert_eq!(listen.args[0], Arg { value: "1935".into(), span: sp(3, 16) });
    assert_eq!(listen.block, None);
}

#[test]
fn urls_and_variables_are_single_words() {
    let tree = parse("push rtmp://host/$app/$name;\non_publish http://x/auth?a=b&c=d;\nexec ${name}x \\;y;").unwrap();
    assert_eq!(tree[0].arg_values(), ["rtmp://host/$app/$name"]);
    assert_eq!(tree[1].arg_values(), ["http://x/auth?a=b&c=d"]);
    assert_eq!(tree[2].arg_values(), ["${name}x", "\\;y"]);
}

#[test]
fn quotes_and_escapes() {
    // `'it''s'`: nginx needs a separator after a closing quote.
    let e = parse(r#"a 'it''s';"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unexpected('\''));
    let tree = parse(r#"a "x y" 'it\'s' "q\"\\\t\n\z" "" 'a;{}#' ("b");"#).unwrap();
    assert_eq!(tree[0].arg_values(), ["x y", "it's", "q\"\\\t\n\\z", "", "a;{}#", "(\"b\")"]);
}

#[test]
fn quote_then_paren_is_swallowed_like_nginx() {
    let tree = parse(r#"if ($a = "b") { return 403; }"#).unwrap();
    assert_eq!(tree[0].arg_values(), ["($a", "=", "b"]);
    assert_eq!(tree[0].block.as_ref().unwrap()[0].name, "return");
}

#[test]
fn comments_only_start_words() {
    let text = "# leading\na b#c; # trailing ; { }\n#\nd;";
    let tree = parse(text).unwrap();
    assert_eq!(shape(&tree).len(), 2);
    assert_eq!(tree[0].arg_values(), ["b#c"]);
    assert_eq!(tree[1].name, "d");
    assert_eq!(tree[1].span, sp(4, 1));
}

#[test]
fn empty_blocks_and_tight_punctuation() {
    let tree = parse("events{}a{b;c{}}d;").unwrap();
    assert_eq!(tree.len(), 3);
    assert_eq!(tree[0].block, Some(vec![]));
    assert_eq!(tree[1].block.as_ref().unwrap().len(), 2);
}

#[test]
fn columns_count_characters() {
    let tree = parse("é x;\n\tb  y;").unwrap();
    assert_eq!(tree[0].args[0].span, sp(1, 3));
    assert_eq!(tree[1].span, sp(2, 2));
    assert_eq!(tree[1].args[0].span, sp(2, 5));
}

#[test]
fn empty_and_blank_input() {
    assert_eq!(parse("").unwrap(), vec![]);
    assert_eq!(parse("  \n# only a comment").unwrap(), vec![]);
}

#[test]
fn error_unexpected_close() {
    assert_eq!(err("a;\n}"), ("unexpected \"}\"".into(), sp(2, 1)));
}

#[test]
fn error_unexpected_semicolon_and_open() {
    assert_eq!(err("a; ;"), ("unexpected \";\"".into(), sp(1, 4)));
    assert_eq!(err("{ a; }"), ("unexpected \"{\"".into(), sp(1, 1)));
}

#[test]
fn error_unterminated_string() {
    assert_eq!(err("a\n  \"abc;\n"), ("unterminated string".into(), sp(2, 3)));
    assert_eq!(err("a 'x\\"), ("unterminated string".into(), sp(1, 3)));
}

#[test]
fn error_eof() {
    let msg = "unexpected end of file, expecting \";\" or \"}\"";
    assert_eq!(err("a b"), (msg.into(), sp(1, 4)));
    assert_eq!(err("x {\n a;\n"), ("unexpected end of file, expecting \"}\"".into(), sp(3, 1)));
}

#[test]
fn error_missing_semicolon() {
    assert_eq!(err("x {\n  live on\n}"), ("directive \"live\" has no \";\"".into(), sp(2, 3)));
}

#[test]
fn error_garbage_after_quote() {
    assert_eq!(err("a \"b\"c;"), ("unexpected \"c\"".into(), sp(1, 6)));
}

#[test]
fn render_round_trips() {
    let text = "a \"x y\" 'q\"' b\\\\c \"\" {\n  c \"}\" \"#x\";\n}\nd;";
    let tree = parse(text).unwrap();
    let again = parse(&render(&tree)).unwrap();
    assert_eq!(shape(&tree), shape(&again));
}

// ---- property tests ----

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,10}",
        "[a-zA-Z0-9_./:$?=&-]{1,16}",
        Just("rtmp://host/$app/$name".to_string()),
        Just("${name}_hi".to_string()),
        // Words that need quoting.
        "[ a-z;{}\"'\\\\#$()\t]{0,8}",
    ]
}

fn tree() -> impl Strategy<Value = Vec<Shape>> {
    let leaf = (word(), prop::collection::vec(word(), 0..4)).prop_map(|(name, args)| Shape { name, args, block: None });
    let node = leaf.prop_recursive(4, 40, 5, |inner| {
        (word(), prop::collection::vec(word(), 0..3), prop::collection::vec(inner, 0..5))
            .prop_map(|(name, args, children)| Shape { name, args, block: Some(children) })
    });
    prop::collection::vec(node, 0..6)
}

enum Tok {
    Word(String),
    Punct(&'static str),
}

fn tokens(shapes: &[Shape], out: &mut Vec<Tok>) {
    for s in shapes {
        out.push(Tok::Word(quote(&s.name)));
        out.extend(s.args.iter().map(|a| Tok::Word(quote(a))));
        match &s.block {
            None => out.push(Tok::Punct(";")),
            Some(children) => {
                out.push(Tok::Punct("{"));
                tokens(children, out);
                out.push(Tok::Punct("}"));
            }
        }
    }
}

const SEPARATORS: &[&str] = &[" ", "\n", "\t", "  ", "\r\n", " # a comment ; { }\n", "\n#\n"];

/// Lays tokens out with the given separators; a separator may be empty only where nginx's
/// lexer does not need one (after `;`, `{` or `}`).
fn layout(tokens: &[Tok], seps: &[(bool, usize)]) -> String {
    let mut out = String::new();
    for (i, tok) in tokens.iter().enumerate() {
        let (empty, pick) = seps[i % seps.len()];
        let after_punct = matches!(tokens.get(i.wrapping_sub(1)), Some(Tok::Punct(_)));
        if i > 0 && !(empty && after_punct) {
            out.push_str(SEPARATORS[pick % SEPARATORS.len()]);
        }
        match tok {
            Tok::Word(w) => out.push_str(w),
            Tok::Punct(p) => out.push_str(p),
        }
    }
    out
}

proptest! {
    #[test]
    fn layout_does_not_change_the_tree(
        shapes in tree(),
        seps in prop::collection::vec((any::<bool>(), 0usize..16), 1..32),
    ) {
        let mut toks = Vec::new();
        tokens(&shapes, &mut toks);
        let text = layout(&toks, &seps);
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{e} at {} in {text:?}", e.span)))?;
        prop_assert_eq!(shape(&parsed), shapes);
    }

    #[test]
    fn never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn never_panics_on_syntax_soup(text in "[ a{};\"'\\\\#$()\n]{0,64}") {
        if let Ok(tree) = parse(&text) {
            // Whatever parses must survive a render/parse round trip.
            prop_assert_eq!(shape(&parse(&render(&tree)).unwrap()), shape(&tree));
        }
    }
}

/// Files in memory; a pattern ending in `*` matches every name with its prefix, in order.
struct Files(Vec<(&'static str, &'static str)>);

impl Loader for Files {
    fn load(&mut self, pattern: &str) -> Result<Vec<Source>, String> {
        let source = |(name, text): &(&str, &str)| Source {
            name: name.to_string(),
            key: name.to_string(),
            text: text.to_string(),
        };
        if let Some(prefix) = pattern.strip_suffix('*') {
            return Ok(self.0.iter().filter(|(n, _)| n.starts_with(prefix)).map(source).collect());
        }
        self.0
            .iter()
            .find(|(n, _)| *n == pattern)
            .map(|f| vec![source(f)])
            .ok_or_else(|| format!("open() \"{pattern}\" failed"))
    }
}

fn main_file(text: &str) -> Source {
    Source { name: "main.conf".into(), key: "main.conf".into(), text: text.into() }
}

#[test]
fn include_takes_the_place_of_the_directive_anywhere() {
    let mut files = Files(vec![
        ("d/a.conf", "application a {\n    live on;\n}\n"),
        ("d/b.conf", "application b { include inner.conf; }"),
        ("inner.conf", "record all;"),
        ("top.conf", "rtmp { server { include d/*; } }"),
    ]);
    let parsed = parse_files(main_file("user x;\ninclude top.conf;\nhttp { }"), &mut files).unwrap();
    assert_eq!(parsed.files, ["main.conf", "top.conf", "d/a.conf", "d/b.conf", "inner.conf"]);
    let names: Vec<_> = parsed.directives.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["user", "rtmp", "http"]);
    let server = &parsed.directives[1].block.as_ref().unwrap()[0];
    let apps = server.block.as_ref().unwrap();
    assert_eq!(apps.iter().map(|a| a.args[0].value.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    let live = &apps[0].block.as_ref().unwrap()[0];
    assert_eq!(live.span, Span { line: 2, col: 5, file: 2 }, "positions say which file");
    let record = &apps[1].block.as_ref().unwrap()[0];
    assert_eq!((record.name.as_str(), record.span.file), ("record", 4));
    assert_eq!(parsed.directives[2].span, Span::new(3, 1));
}

#[test]
fn include_errors_name_the_file() {
    let err = |main: &str, files: Vec<(&'static str, &'static str)>| {
        parse_files(main_file(main), &mut Files(files)).unwrap_err().to_string()
    };
    assert_eq!(err("\n include nope.conf;", vec![]), "main.conf:2:2: open() \"nope.conf\" failed");
    assert!(
        parse_files(main_file("include d/*;"), &mut Files(vec![])).unwrap().directives.is_empty(),
        "a glob may match nothing"
    );
    assert_eq!(
        err("include a.conf;", vec![("a.conf", "x {\n")]),
        "a.conf:2:1: unexpected end of file, expecting \"}\""
    );
    assert_eq!(
        err("x { include a.conf; }", vec![("a.conf", "}")]),
        "a.conf:1:1: unexpected \"}\"",
        "a file's blocks are its own"
    );
    assert_eq!(
        err("include a.conf;", vec![("a.conf", "x y")]),
        "a.conf:1:4: unexpected end of file, expecting \";\" or \"}\""
    );
    assert_eq!(err("include a b;", vec![]), "main.conf:1:1: invalid number of arguments in \"include\" directive");
    assert_eq!(err("include a { }", vec![]), "main.conf:1:1: directive \"include\" is not terminated by \";\"");
}

#[test]
fn include_cycles_and_depth_are_errors() {
    let files = vec![("a.conf", "include b.conf;"), ("b.conf", "\n\ninclude a.conf;")];
    let e = parse_files(main_file("include a.conf;"), &mut Files(files)).unwrap_err();
    assert_eq!(e.to_string(), "b.conf:3:1: include cycle: \"a.conf\" is already being read");
    let e = parse_files(main_file("include main.conf;"), &mut Files(vec![("main.conf", "")])).unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::IncludeCycle("main.conf".into()));
    // Sequential includes of one file are fine (nginx allows them).
    let twice = parse_files(main_file("include a.conf; include a.conf;"), &mut Files(vec![("a.conf", "x;")])).unwrap();
    assert_eq!(twice.directives.len(), 2);

    /// An endless chain of distinct files: 0.conf includes 1.conf includes 2.conf ...
    struct Chain;
    impl Loader for Chain {
        fn load(&mut self, pattern: &str) -> Result<Vec<Source>, String> {
            let n: u32 = pattern.trim_end_matches(".conf").parse().unwrap();
            let text = format!("include {}.conf;", n + 1);
            Ok(vec![Source { name: pattern.into(), key: pattern.into(), text }])
        }
    }
    let e = parse_files(main_file("include 0.conf;"), &mut Chain).unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::IncludeTooDeep(MAX_INCLUDE_DEPTH));

    /// A glob that matches more files than allowed.
    struct Many;
    impl Loader for Many {
        fn load(&mut self, _: &str) -> Result<Vec<Source>, String> {
            Ok((0..MAX_FILES)
                .map(|i| Source { name: i.to_string(), key: i.to_string(), text: String::new() })
                .collect())
        }
    }
    let e = parse_files(main_file("include *;"), &mut Many).unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::TooManyFiles(MAX_FILES));
}

#[test]
fn plain_parse_keeps_include_as_a_directive() {
    let tree = parse("include a.conf;").unwrap();
    assert_eq!((tree[0].name.as_str(), tree[0].arg_values()), ("include", vec!["a.conf"]));
}

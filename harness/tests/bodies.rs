//! Bodies in chunks, buffering, Envoy's two header-pause modes, trailers,
//! and what the client receives piece by piece.

mod common;
use common::*;

fn ab_cd_ef() -> Vec<Vec<u8>> {
    vec![b"ab".to_vec(), b"cd".to_vec(), b"ef".to_vec()]
}

#[test]
fn continued_chunks_pass_one_by_one() {
    let mut gw = gw("").build().unwrap();
    let id = gw.request(0).body_chunks(ab_cd_ef()).send();
    assert_logged(&gw, "probe body: size=2 eos=false text=ab");
    assert_logged(&gw, "probe body: size=2 eos=false text=cd");
    assert_logged(&gw, "probe body: size=2 eos=true text=ef");
    let out = gw.outcome(id);
    let f = out.expect_forwarded();
    assert_eq!(f.body, b"abcdef");
    let at: Vec<Option<usize>> = f.body_pieces.iter().map(|p| p.callback).collect();
    assert_eq!(at, vec![Some(0), Some(1), Some(2)]);
    assert_eq!(f.headers_sent_at, None);
    assert_no_trap(&gw);
}

#[test]
fn a_paused_body_accumulates_and_can_be_replaced_whole() {
    let mut gw = gw("").build().unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "body-hold;body-upper")
        .body("abcdef")
        .body_split_at(&[2, 4])
        .send();
    assert_logged(&gw, "probe body: size=2 eos=false text=ab");
    assert_logged(&gw, "probe body: size=4 eos=false text=abcd");
    assert_logged(&gw, "probe body: size=6 eos=true text=abcdef");
    assert_logged(&gw, "probe set-buffer 0 start=0 size=6: Ok");
    let out = gw.outcome(id);
    let f = out.expect_forwarded();
    assert_eq!(f.body, b"ABCDEF");
    assert_eq!(f.body_pieces.len(), 1);
    assert_eq!(f.body_pieces[0].callback, Some(2));
}

#[test]
fn any_random_split_gives_the_same_forwarded_body() {
    for seed in 0..25 {
        let mut gw = gw("").build().unwrap();
        let id = gw
            .request(0)
            .header("x-probe", "body-hold;body-upper")
            .body("hello, world")
            .body_split_random(4, seed)
            .send();
        assert_eq!(
            gw.outcome(id).expect_forwarded().body,
            b"HELLO, WORLD",
            "seed {seed}"
        );
    }
}

#[test]
fn set_buffer_bytes_in_the_middle_is_bad_argument() {
    let mut gw = gw("").build().unwrap();
    gw.request(0)
        .header("x-probe", "body-set-bad")
        .body("abc")
        .send();
    assert_logged(&gw, "probe set-buffer 0 start=1 size=1: BadArgument");
}

#[test]
fn by_default_a_header_pause_hides_the_body_until_resume_then_delivers_it_at_once() {
    let mut gw = gw("").build().unwrap();
    let a = gw
        .request(0)
        .header("x-probe", "park:a;late-add")
        .body_chunks(ab_cd_ef())
        .send();
    assert_not_logged(&gw, "probe body:");
    assert_eq!(gw.upstream_headers(a), None);
    gw.request(0).header("x-probe", "wake:a").send();
    // Everything that arrived while stopped comes in one callback.
    assert_logged(&gw, "probe body: size=6 eos=true text=abcdef");
    assert_logged(&gw, "probe add x-late: BadArgument");
    let out = gw.outcome(a);
    let f = out.expect_forwarded();
    assert!(f.header("x-woken-by").is_some());
    assert_eq!(f.header("x-late"), None);
    assert_eq!(f.body, b"abcdef");
}

#[test]
fn with_allow_on_headers_stop_iteration_body_callbacks_run_while_headers_are_held() {
    let mut gw = gw("")
        .allow_on_headers_stop_iteration(true)
        .build()
        .unwrap();
    let a = gw
        .request(0)
        .header("x-probe", "park:a;body-pause;late-add")
        .body_chunks(ab_cd_ef())
        .send();
    assert_logged(&gw, "probe body: size=2 eos=false text=ab");
    assert_logged(&gw, "probe body: size=6 eos=true text=abcdef");
    assert_logged(&gw, "probe add x-late: Ok");
    // Nothing has gone upstream.
    gw.outcome(a).expect_pending();
    assert_eq!(gw.upstream_headers(a), None);
    assert!(gw.upstream_body_pieces(a).is_empty());
    gw.request(0).header("x-probe", "wake:a").send();
    let out = gw.outcome(a);
    let f = out.expect_forwarded();
    assert_eq!(f.header_all("x-late"), vec![&b"0"[..], b"1", b"2"]);
    assert!(f.header("x-woken-by").is_some());
    assert_eq!(f.body, b"abcdef");
    assert_eq!(f.body_pieces.len(), 1);
    assert!(f.body_pieces[0].by_resume);
    assert_no_trap(&gw);
}

#[test]
fn with_allow_on_headers_stop_iteration_a_body_continue_sends_headers_and_buffer_together() {
    let mut gw = gw("")
        .allow_on_headers_stop_iteration(true)
        .build()
        .unwrap();
    let a = gw
        .request(0)
        .header("x-probe", "pause;late-add;body-release-at:1")
        .body_chunks(ab_cd_ef())
        .send();
    let out = gw.outcome(a);
    let f = out.expect_forwarded();
    // Headers held through callbacks 0 and 1 (edits applied), sent at 1
    // with the buffered "abcd"; "ef" passed alone at callback 2, where the
    // headers had gone: the edit returns Ok (Envoy keeps the pointer) but
    // reaches nobody.
    assert_eq!(f.headers_sent_at, Some(1));
    assert_eq!(f.header_all("x-late"), vec![&b"0"[..], b"1"]);
    let pieces: Vec<(&[u8], Option<usize>)> = f
        .body_pieces
        .iter()
        .map(|p| (p.bytes.as_slice(), p.callback))
        .collect();
    assert_eq!(pieces, vec![(&b"abcd"[..], Some(1)), (&b"ef"[..], Some(2))]);
}

#[test]
fn trailers_end_the_request_and_can_be_edited() {
    let mut gw = gw("").build().unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "trailer-remove:x-t1")
        .body("abc")
        .trailer("x-t1", "1")
        .trailer("X-T2", "2")
        .send();
    assert_logged(&gw, "probe body: size=3 eos=false text=abc");
    assert_logged(&gw, "probe trailers: n=2 x-t1=1,x-t2=2");
    assert_logged(&gw, "probe remove x-t1: Ok");
    let out = gw.outcome(id);
    let f = out.expect_forwarded();
    assert_eq!(f.trailer("x-t1"), None);
    assert_eq!(f.trailer("x-t2"), Some(&b"2"[..]));
    assert_eq!(f.body, b"abc");
}

#[test]
fn a_buffering_filter_finishes_in_the_trailers_callback() {
    let mut gw = gw("").build().unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "body-hold;body-upper")
        .body_chunks(ab_cd_ef())
        .trailer("x-t", "1")
        .send();
    assert_not_logged(&gw, "eos=true");
    let out = gw.outcome(id);
    let f = out.expect_forwarded();
    assert_eq!(f.body, b"ABCDEF");
    assert_eq!(f.trailer("x-t"), Some(&b"1"[..]));
}

#[test]
fn the_client_gets_what_the_filter_released_piece_by_piece() {
    let mut gw = gw("").build().unwrap();
    let id = gw.request(0).header("x-probe", "resp-hold-at:1").send();
    gw.respond_chunks(
        id,
        200,
        &[],
        vec![b"aa".to_vec(), b"bb".to_vec(), b"cc".to_vec()],
    );
    let r = gw.response(id).expect("response");
    assert_eq!(r.body, b"aabbcc");
    let pieces: Vec<(&[u8], Option<usize>)> = r
        .body_pieces
        .iter()
        .map(|p| (p.bytes.as_slice(), p.callback))
        .collect();
    assert_eq!(pieces, vec![(&b"aa"[..], Some(0)), (&b"bbcc"[..], Some(2))]);
    assert_logged(&gw, "probe response body: size=4 eos=true text=bbcc");
}

#[test]
fn response_chunks_can_be_rewritten_in_place_and_trailers_edited() {
    let mut gw = gw("").build().unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "resp-body-mark;resp-trailer-remove:x-drop")
        .send();
    gw.respond_with(
        id,
        200,
        &[],
        vec![b"aa".to_vec(), b"bb".to_vec()],
        &[("x-drop", b"1"), ("x-keep", b"2")],
    );
    let r = gw.response(id).expect("response");
    assert_eq!(r.body, b"<aa><bb>");
    assert_eq!(r.trailer("x-drop"), None);
    assert_eq!(r.trailer("x-keep"), Some(&b"2"[..]));
    assert_logged(&gw, "probe response body: size=2 eos=false text=bb");
}

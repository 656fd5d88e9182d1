//! Tic-tac-toe in headless Chromium: two tabs are paired by the lobby,
//! and a move in one shows in the other through a push; a third tab plays
//! the computer, which answers every move.

use std::path::Path;

use goverse_tests::browser::Browser;
use goverse_tests::unique_prefix;

const CELLS: &str =
    "[...document.querySelectorAll('#board button')].map(b => b.textContent).join(',')";

async fn open(url: &str, name: &str) -> Browser {
    let mut tab = Browser::start().await;
    tab.navigate(url).await;
    tab.wait_for(
        "a connection",
        "document.getElementById('connection').textContent === 'connected'",
    )
    .await;
    tab.eval(&format!(
        "document.getElementById('name').value = '{name}'; true"
    ))
    .await;
    tab
}

async fn click(tab: &mut Browser, selector: &str) {
    let selector = serde_json::Value::String(selector.into());
    let clicked = tab
        .eval(&format!(
            "(() => {{ const b = document.querySelector({selector}); if (!b) return false; b.click(); return true; }})()"
        ))
        .await;
    assert_eq!(clicked, true, "nothing to click at {selector}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_play_each_other_and_a_third_plays_the_computer() {
    let dir = std::env::temp_dir().join(unique_prefix("tictactoe").replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("dir");
    let server = example_tictactoe::serve(
        "127.0.0.1:0".parse().expect("address"),
        dir.join("games.db"),
    )
    .await
    .expect("serves");
    let url = format!("http://{}/", server.http_address());
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tictactoe");

    // Ann waits; Ben comes and is paired with her: both see the game.
    let mut ann = open(&url, "ann").await;
    click(&mut ann, "#find").await;
    ann.wait_for(
        "the wait",
        "document.getElementById('connection').textContent.startsWith('waiting')",
    )
    .await;
    let mut ben = open(&url, "ben").await;
    click(&mut ben, "#find").await;
    for (tab, mark) in [(&mut ann, "X"), (&mut ben, "O")] {
        tab.wait_for("the game",
            &format!("document.getElementById('players').textContent === 'X: ann · O: ben · you play {mark}'"),
        )
        .await;
    }
    // Ann (X) takes the centre: Ben sees it, pushed, and it is his move.
    click(&mut ann, "#board button[data-cell='4']").await;
    ben.wait_for("ann's move",
        &format!("{CELLS} === ',,,,X,,,,' && document.getElementById('status').textContent === 'your move'"),
    )
    .await;
    // Ann cannot move again in Ben's turn: her cells are disabled, and
    // the game refuses the call.
    let refused = ann
        .eval(
            "fetch(`/api/v1/objects/call/Game/${board.game}/Play`, {method: 'POST', \
             headers: {'content-type': 'application/json', 'x-client-id': session.id, 'x-session-token': session.token}, \
             body: JSON.stringify({game: board.game, cell: 8})}).then(r => r.json()).then(a => a.code)",
        )
        .await;
    assert_eq!(refused, "NOT_YOUR_TURN");
    // Ben answers in a corner; Ann sees it (and not her own move's answer,
    // should it come after).
    click(&mut ben, "#board button[data-cell='0']").await;
    ann.wait_for("ben's move", &format!("{CELLS} === 'O,,,,X,,,,'"))
        .await;
    ann.screenshot(&shots, "ann").await;
    ben.screenshot(&shots, "ben").await;

    // Cal plays the computer, which answers each move at once.
    let mut cal = open(&url, "cal").await;
    click(&mut cal, "#computer").await;
    cal.wait_for(
        "the game",
        "document.getElementById('players').textContent === 'X: cal · O: computer · you play X'",
    )
    .await;
    click(&mut cal, "#board button[data-cell='0']").await;
    cal.wait_for(
        "the computer's answer",
        &format!("({CELLS}).split(',').filter(c => c === 'O').length === 1"),
    )
    .await;
    cal.screenshot(&shots, "cal").await;

    server.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

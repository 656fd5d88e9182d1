//! Tic-tac-toe: each game is a persistent object, a lobby object pairs
//! players (or gives one the computer), and every move is pushed to both
//! players. Players are the clients of the gate's event stream: a move is
//! taken only from the client whose session the gate verified.
//!
//! Run with: cargo run -p example-tictactoe

use std::net::SocketAddr;
use std::path::PathBuf;

use goverse::gate::{Gate, GateOptions};
use goverse::prelude::*;

/// The game's messages, from `proto/tictactoe.proto`.
pub mod tictactoe {
    goverse::include_proto!("tictactoe");
}
pub use tictactoe::{Board, Move, Seat, Seek, Start};

/// The computer's name, as O.
pub const COMPUTER: &str = "computer";

/// A cell: empty, or marked by X or O.
pub type Cell = u8;
/// An empty cell.
pub const EMPTY: Cell = 0;
/// X's mark.
pub const X: Cell = 1;
/// O's mark.
pub const O: Cell = 2;

const LINES: [[usize; 3]; 8] = [
    [0, 1, 2],
    [3, 4, 5],
    [6, 7, 8],
    [0, 3, 6],
    [1, 4, 7],
    [2, 5, 8],
    [0, 4, 8],
    [2, 4, 6],
];

/// The mark with three in a row, if any.
pub fn winner(cells: &[Cell; 9]) -> Option<Cell> {
    LINES.iter().find_map(|&[a, b, c]| {
        (cells[a] != EMPTY && cells[a] == cells[b] && cells[b] == cells[c]).then_some(cells[a])
    })
}

/// The other player's mark.
pub fn other(mark: Cell) -> Cell {
    if mark == X { O } else { X }
}

/// How the game ends for `mark`, to move, with best play from both:
/// +10 - moves for a win (sooner is better), 0 for a draw, negative for a
/// loss.
fn score(cells: &mut [Cell; 9], mark: Cell, depth: i32) -> i32 {
    if let Some(won) = winner(cells) {
        return if won == mark { 10 - depth } else { depth - 10 };
    }
    let mut best = None;
    for cell in 0..9 {
        if cells[cell] != EMPTY {
            continue;
        }
        cells[cell] = mark;
        let value = -score(cells, other(mark), depth + 1);
        cells[cell] = EMPTY;
        best = Some(best.map_or(value, |b: i32| b.max(value)));
    }
    best.unwrap_or(0)
}

// ANCHOR: computer
/// The computer's move for `mark` (a full game-tree search: 3×3 is
/// small): it never loses, and wins when it can, soonest first. `None` on
/// a full board.
pub fn computer_move(cells: &[Cell; 9], mark: Cell) -> Option<usize> {
    let mut board = *cells;
    let mut best: Option<(i32, usize)> = None;
    for cell in 0..9 {
        if board[cell] != EMPTY {
            continue;
        }
        board[cell] = mark;
        let value = -score(&mut board, other(mark), 1);
        board[cell] = EMPTY;
        if best.is_none_or(|(b, _)| value > b) {
            best = Some((value, cell));
        }
    }
    best.map(|(_, cell)| cell)
}
// ANCHOR_END: computer

/// A player: name and client id.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Player {
    name: String,
    client: String,
}

// ANCHOR: game
/// One game: the board, the players, whose turn it is and how it ended.
/// Persistent: a game outlives the server.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Game {
    cells: [Cell; 9],
    x: Player,
    o: Player,
    turn: Cell,
    /// X or O once won, 3 for a draw, else 0.
    result: Cell,
}

const DRAW: Cell = 3;

#[goverse::object(persistent)]
impl Game {
    /// Starts the game (the lobby does this), and shows it to both players.
    pub async fn start(&mut self, ctx: &Context, start: Start) -> Result<Board> {
        if ctx.is_external() {
            return Err(goverse::Error::application(
                "LOBBY_ONLY",
                "games are started by the lobby",
            ));
        }
        if self.turn == EMPTY && self.result == EMPTY {
            self.x = Player {
                name: start.x_name,
                client: start.x_client,
            };
            self.o = Player {
                name: start.o_name,
                client: start.o_client,
            };
            self.turn = X;
        }
        self.show(ctx).await;
        Ok(self.board(ctx.id(), X))
    }

    /// Marks `cell` for the calling player, if it is their turn; the
    /// computer answers at once. Both players are shown the new board.
    pub async fn play(&mut self, ctx: &Context, request: Move) -> Result<Board> {
        let mark = match ctx.client_id() {
            Some(client) if client == self.x.client => X,
            Some(client) if client == self.o.client => O,
            _ => {
                return Err(goverse::Error::application(
                    "NOT_A_PLAYER",
                    "only this game's players move, from their own sessions",
                ));
            }
        };
        if self.result != EMPTY {
            return Err(goverse::Error::application("GAME_OVER", "the game is over"));
        }
        if self.turn != mark {
            return Err(goverse::Error::application(
                "NOT_YOUR_TURN",
                "wait for the other player",
            ));
        }
        let cell = usize::try_from(request.cell)
            .ok()
            .filter(|&c| c < 9 && self.cells[c] == EMPTY)
            .ok_or_else(|| {
                goverse::Error::application("BAD_MOVE", "pick an empty cell from 0 to 8")
            })?;
        self.mark(cell, mark);
        if self.result == EMPTY
            && self.o.name == COMPUTER
            && self.o.client.is_empty()
            && let Some(answer) = computer_move(&self.cells, O)
        {
            self.mark(answer, O);
        }
        self.show(ctx).await;
        Ok(self.board(ctx.id(), mark))
    }

    /// The board, as the calling player sees it.
    pub async fn view(&self, ctx: &Context, _request: Empty) -> Result<Board> {
        let you = match ctx.client_id() {
            Some(client) if client == self.x.client => X,
            Some(client) if client == self.o.client => O,
            _ => EMPTY,
        };
        Ok(self.board(ctx.id(), you))
    }

    fn mark(&mut self, cell: usize, mark: Cell) {
        self.cells[cell] = mark;
        self.turn = other(mark);
        if let Some(won) = winner(&self.cells) {
            self.result = won;
        } else if self.cells.iter().all(|&c| c != EMPTY) {
            self.result = DRAW;
        }
        if self.result != EMPTY {
            self.turn = EMPTY;
        }
    }

    /// Pushes the board to each player still connected.
    async fn show(&self, ctx: &Context) {
        for (player, mark) in [(&self.x, X), (&self.o, O)] {
            if !player.client.is_empty() {
                // A player who has gone just misses the update.
                let _ = ctx.push(&player.client, &self.board(ctx.id(), mark)).await;
            }
        }
    }

    fn board(&self, game: &str, you: Cell) -> Board {
        let name = |cell: Cell| match cell {
            X => "X",
            O => "O",
            DRAW => "draw",
            _ => "",
        };
        Board {
            game: game.to_string(),
            cells: self.cells.iter().map(|&c| name(c).to_string()).collect(),
            x: self.x.name.clone(),
            o: self.o.name.clone(),
            turn: name(self.turn).to_string(),
            result: name(self.result).to_string(),
            you: name(you).to_string(),
        }
    }
}
// ANCHOR_END: game

// ANCHOR: lobby
/// The lobby: pairs players as they come, or gives one the computer.
#[derive(Debug, Default)]
pub struct Lobby {
    waiting: Option<Player>,
    games: u64,
}

#[goverse::object]
impl Lobby {
    /// Finds the calling client a game: against the computer at once, or
    /// against the player waiting, or else it waits (an empty seat) and is
    /// shown its game when an opponent comes.
    pub async fn seek(&mut self, ctx: &Context, seek: Seek) -> Result<Seat> {
        let Some(client) = ctx.client_id().map(str::to_string) else {
            return Err(goverse::Error::application(
                "NO_SESSION",
                "seek a game with your session's client id and token",
            ));
        };
        let name = match seek.name.trim() {
            "" => "anonymous".to_string(),
            name => name.chars().take(24).collect(),
        };
        let me = Player { name, client };
        let (x, o, mark) = if seek.computer {
            let computer = Player {
                name: COMPUTER.into(),
                client: String::new(),
            };
            (me, computer, "X")
        } else {
            match self.waiting.take() {
                Some(waiting) if waiting.client != me.client => (waiting, me, "O"),
                _ => {
                    self.waiting = Some(me);
                    return Ok(Seat::default());
                }
            }
        };
        self.games += 1;
        let game = format!("{}-{}", ctx.id(), self.games);
        GameClient::new(ctx, game.clone())
            .start(Start {
                x_name: x.name,
                x_client: x.client,
                o_name: o.name,
                o_client: o.client,
            })
            .await?;
        Ok(Seat {
            game,
            mark: mark.into(),
        })
    }
}
// ANCHOR_END: lobby

/// A running game server.
#[derive(Debug)]
pub struct GameServer {
    node: Node,
    gate: Gate,
    http: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

const PAGE: &str = include_str!("page.html");

/// Starts the game: an embedded node hosting `Game` and `Lobby` (games
/// kept in the SQLite file `database`) with the gate, and the page at
/// `/` on `http` beside the gate's API.
///
/// # Errors
///
/// A database that cannot be opened, or an address in use.
pub async fn serve(http: SocketAddr, database: PathBuf) -> Result<GameServer> {
    let node = Node::builder()
        .register::<Game>()
        .register::<Lobby>()
        .storage(goverse::storage::SqliteStorage::open(&database).await?)
        .start()
        .await?;
    let gate = Gate::start(&node, GateOptions::default()).await?;
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async { axum::response::Html(PAGE) }),
        )
        .merge(gate.router());
    let listener = tokio::net::TcpListener::bind(http)
        .await
        .map_err(|e| goverse::Error::Config(format!("cannot serve on {http}: {e}")))?;
    let http = listener
        .local_addr()
        .map_err(|e| goverse::Error::Internal(e.to_string()))?;
    let server = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("tictactoe: the web server stopped: {error}");
        }
    });
    Ok(GameServer {
        node,
        gate,
        http,
        server,
    })
}

impl GameServer {
    /// Where the page is.
    pub fn http_address(&self) -> SocketAddr {
        self.http
    }

    /// Stops the server; the games are saved.
    pub async fn shutdown(self) {
        self.gate.shutdown().await;
        self.server.abort();
        self.node.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way `opponent` can play against the computer as `computer`:
    /// the computer never loses. Returns how many games were played.
    fn never_loses(cells: &mut [Cell; 9], to_move: Cell, computer: Cell) -> usize {
        if let Some(won) = winner(cells) {
            assert_eq!(won, computer, "the computer lost: {cells:?}");
            return 1;
        }
        if cells.iter().all(|&c| c != EMPTY) {
            return 1;
        }
        if to_move == computer {
            let cell = computer_move(cells, computer).expect("a free cell");
            cells[cell] = computer;
            let games = never_loses(cells, other(computer), computer);
            cells[cell] = EMPTY;
            return games;
        }
        let mut games = 0;
        for cell in 0..9 {
            if cells[cell] == EMPTY {
                cells[cell] = to_move;
                games += never_loses(cells, computer, computer);
                cells[cell] = EMPTY;
            }
        }
        games
    }

    #[test]
    fn the_computer_never_loses_whatever_its_opponent_plays() {
        assert!(never_loses(&mut [EMPTY; 9], X, O) > 100);
        assert!(never_loses(&mut [EMPTY; 9], X, X) > 10);
    }

    #[test]
    fn the_computer_takes_a_win_and_blocks_a_loss() {
        // O to move can win at 2.
        let cells = [O, O, EMPTY, X, X, EMPTY, X, EMPTY, EMPTY];
        assert_eq!(computer_move(&cells, O), Some(2));
        // O must block X's row at 5.
        let cells = [O, EMPTY, EMPTY, X, X, EMPTY, EMPTY, EMPTY, EMPTY];
        assert_eq!(computer_move(&cells, O), Some(5));
        assert_eq!(computer_move(&[X; 9], O), None);
    }
}

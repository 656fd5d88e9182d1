//! Call chains: the objects whose turns wait on a nested call, for
//! detecting cycles (A -> B -> A) on one node and across nodes.

use std::sync::Arc;

/// One link of a call chain: an object whose turn waits on a nested call.
#[derive(Debug)]
pub(crate) struct CallChain {
    pub(crate) type_name: std::borrow::Cow<'static, str>,
    pub(crate) id: Arc<str>,
    pub(crate) parent: Option<Arc<CallChain>>,
}

impl CallChain {
    pub(crate) fn contains(&self, type_name: &str, id: &str) -> bool {
        self.links()
            .any(|link| link.type_name == type_name && &*link.id == id)
    }

    fn links(&self) -> impl Iterator<Item = &CallChain> {
        std::iter::successors(Some(self), |link| link.parent.as_deref())
    }

    /// `A/a -> B/b`, outermost first.
    pub(crate) fn render(&self) -> String {
        let mut links: Vec<String> = self
            .links()
            .map(|link| format!("{}/{}", link.type_name, link.id))
            .collect();
        links.reverse();
        links.join(" -> ")
    }
}

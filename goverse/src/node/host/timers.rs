//! Object timers: started and stopped from a turn, each firing a turn of
//! its own.

use super::*;

/// Stops a timer without cancelling a timer turn half-way.
pub(crate) struct TimerControl {
    name: Box<str>,
    stopped: AtomicBool,
    wake: Notify,
}

impl TimerControl {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

impl<O: Object> ActivationScope for Activation<O> {
    fn start_timer(&self, name: &str, period: Duration) {
        let Some(node) = self.host.upgrade().and_then(|host| host.node.upgrade()) else {
            return;
        };
        let period = period.max(Duration::from_millis(1));
        let control = Arc::new(TimerControl {
            name: name.into(),
            stopped: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let activation = self.this.clone();
        let task_control = control.clone();
        node.runtime.spawn(async move {
            let control = task_control;
            let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = control.wake.notified() => {}
                }
                if control.stopped.load(Ordering::Acquire) {
                    break;
                }
                let Some(activation) = activation.upgrade() else {
                    break;
                };
                let Some(host) = activation.host.upgrade() else {
                    break;
                };
                if !host.timer_turn(&activation, &control).await {
                    break;
                }
            }
        });
        self.add_timer(control);
    }

    fn stop_timer(&self, name: &str) -> bool {
        self.remove_timer(name)
    }
}

impl<O: Object> TypeHost<O> {
    pub(super) async fn timer_turn(
        &self,
        activation: &Arc<Activation<O>>,
        timer: &TimerControl,
    ) -> bool {
        let Some(node) = self.node.upgrade() else {
            return false;
        };
        let mut guard = activation.state.write().await;
        if timer.stopped.load(Ordering::Acquire) {
            return false;
        }
        if Self::is_stale(&node, activation) {
            self.drop_instance(activation, &mut guard);
            return false;
        }
        let Slot::Active(object) = &mut *guard else {
            return false;
        };
        let deadline = Instant::now() + node.config.call_timeout;
        let ctx = self.context(&node, activation, None, deadline);
        let outcome = CatchUnwind(object.on_timer(&ctx, &timer.name)).await;
        if outcome.is_ok() && O::DESCRIPTOR.persistent {
            // A timer turn is a turn: what it changed is made durable too.
            if self
                .persist(&node, activation, &mut guard, None)
                .await
                .is_err()
            {
                return false;
            }
        }
        match outcome {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(
                    object_type = O::DESCRIPTOR.type_name,
                    object_id = %activation.id,
                    timer = %timer.name,
                    %error,
                    "timer callback failed"
                );
                true
            }
            Err(_message) => {
                self.discard(&node, activation, &mut guard);
                false
            }
        }
    }
}

//! The 24-hour window: reports folded into 10-minute buckets per McpClient, and the view
//! status is computed from.

use super::*;

impl UsageStore {
    /// Folds a report in, received at `now` (the operator's clock: sidecar clocks only bound
    /// `lastSeen`).
    pub fn record(&self, report: UsageReport, now: Timestamp) -> Recorded {
        let mut state = self.state.lock().expect("usage lock");
        let pod = (report.namespace.clone(), report.pod.clone());
        let reporter = state.reporters.entry(pod.clone()).or_default();
        if reporter.boot_id == report.boot_id
            && report.seq <= reporter.seq
            && reporter.last_report.is_some()
        {
            return Recorded::Duplicate;
        }
        reporter.boot_id = report.boot_id;
        reporter.seq = report.seq;
        reporter.last_report = Some(now);
        reporter.bundle_version = report.bundle_version;
        let runaway: BTreeMap<Key, RunawayFlag> = report
            .runaway
            .into_iter()
            .map(|f| ((f.namespace.clone(), f.name.clone()), f))
            .collect();
        let mut urgent = runaway != reporter.runaway;
        reporter.runaway = runaway;
        for seen in report.tools {
            let mut names = seen.tools_seen;
            names.sort();
            names.dedup();
            let key = (seen.namespace, seen.name);
            if reporter.tools.get(&key).map(|(_, n)| n) != Some(&names) {
                urgent = true;
            }
            reporter.tools.insert(key, (now, names));
        }
        if let Some(bypass) = report.bypassable {
            urgent |= reporter.bypass.as_ref() != Some(&bypass);
            reporter.bypass = Some(bypass);
        }
        let index = bucket_of(now);
        for usage in report.clients {
            let window = state
                .clients
                .entry((usage.namespace, usage.name))
                .or_default();
            if window.buckets.back().is_none_or(|b| b.index != index) {
                window.buckets.push_back(Bucket {
                    index,
                    ..Bucket::default()
                });
            }
            let bucket = window.buckets.back_mut().expect("just pushed");
            bucket.calls = bucket.calls.saturating_add(usage.calls);
            for (reason, n) in usage.denials {
                let slot = bucket.denials.entry(reason).or_default();
                *slot = slot.saturating_add(n);
            }
            // A sidecar clock ahead of ours must not put lastSeen in the future.
            let seen = usage.last_seen.map(|t| t.min(now));
            if let Some(seen) = seen {
                window.last_seen = Some(window.last_seen.map_or(seen, |l| l.max(seen)));
            }
            for (tool, n) in usage.tools {
                let key = (pod.clone(), tool);
                let used = seen.unwrap_or(now);
                let last = window.tools_last_used.entry(key.clone()).or_insert(used);
                *last = (*last).max(used);
                let slot = bucket.tools.entry(key).or_default();
                *slot = slot.saturating_add(n);
            }
            let uses = [
                (Capability::Resource, usage.resources),
                (Capability::Prompt, usage.prompts),
            ];
            for (capability, map) in uses {
                for (pattern, n) in map {
                    let key = (pod.clone(), capability, pattern);
                    let used = seen.unwrap_or(now);
                    let last = window.uses_last_used.entry(key.clone()).or_insert(used);
                    *last = (*last).max(used);
                    let slot = bucket.uses.entry(key).or_default();
                    *slot = slot.saturating_add(n);
                }
            }
            let oldest = bucket_of(now - WINDOW);
            while window.buckets.front().is_some_and(|b| b.index <= oldest) {
                window.buckets.pop_front();
            }
            window
                .tools_last_used
                .retain(|_, t| now.duration_since(*t) <= WINDOW);
            window
                .uses_last_used
                .retain(|_, t| now.duration_since(*t) <= WINDOW);
        }
        drop(state);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        if urgent {
            self.urgent.send_modify(|n| *n = n.wrapping_add(1));
        }
        Recorded::Accepted
    }

    /// The usage as of `now`: counts over the last 24 hours, runaway flags of reporters heard
    /// from within [`REPORTER_TTL`], tools seen within the window.
    pub fn view(&self, now: Timestamp) -> UsageView {
        let state = self.state.lock().expect("usage lock");
        let oldest = bucket_of(now - WINDOW);
        let mut view = UsageView::default();
        for (key, window) in &state.clients {
            let mut c = ClientView {
                last_seen: window.last_seen,
                ..ClientView::default()
            };
            for b in window.buckets.iter().filter(|b| b.index > oldest) {
                c.calls_24h = c.calls_24h.saturating_add(b.calls);
                for (reason, n) in &b.denials {
                    c.denials_24h = c.denials_24h.saturating_add(*n);
                    *c.denials_by_reason.entry(reason.clone()).or_default() += n;
                }
                for (tool, n) in &b.tools {
                    let t = c.tools.entry(tool.clone()).or_default();
                    t.calls_24h = t.calls_24h.saturating_add(*n);
                }
                for (used, n) in &b.uses {
                    let u = c.uses.entry(used.clone()).or_default();
                    u.calls_24h = u.calls_24h.saturating_add(*n);
                }
            }
            for (tool, at) in &window.tools_last_used {
                if now.duration_since(*at) <= WINDOW {
                    c.tools.entry(tool.clone()).or_default().last_used = Some(*at);
                }
            }
            for (used, at) in &window.uses_last_used {
                if now.duration_since(*at) <= WINDOW {
                    c.uses.entry(used.clone()).or_default().last_used = Some(*at);
                }
            }
            view.clients.insert(key.clone(), c);
        }
        for (pod, reporter) in &state.reporters {
            let fresh = reporter
                .last_report
                .is_some_and(|t| now.duration_since(t) <= REPORTER_TTL);
            if let Some(b) = reporter.bypass.as_ref().filter(|_| fresh) {
                view.bypass
                    .entry((b.namespace.clone(), b.name.clone()))
                    .or_default()
                    .push((pod.clone(), b.clone()));
            }
            if fresh {
                for (client, flag) in &reporter.runaway {
                    view.clients
                        .entry(client.clone())
                        .or_default()
                        .runaway
                        .push((pod.clone(), flag.clone()));
                }
            }
            for (tool, (at, names)) in &reporter.tools {
                if now.duration_since(*at) <= WINDOW {
                    view.tools
                        .entry(tool.clone())
                        .or_default()
                        .extend(names.iter().cloned());
                }
            }
        }
        for c in view.clients.values_mut() {
            c.runaway.sort_by(|a, b| a.0.cmp(&b.0));
        }
        for pods in view.bypass.values_mut() {
            pods.sort_by(|a, b| a.0.cmp(&b.0));
        }
        view
    }

    /// Drops what a deleted pod reported (its flags and tool lists; counts stay in the window).
    pub fn forget_pod(&self, namespace: &str, pod: &str) {
        let removed = self
            .state
            .lock()
            .expect("usage lock")
            .reporters
            .remove(&(namespace.to_owned(), pod.to_owned()));
        if removed
            .is_some_and(|r| !r.runaway.is_empty() || !r.tools.is_empty() || r.bypass.is_some())
        {
            self.urgent.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Sees a new value after every accepted report.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Sees a new value when runaway flags or tool lists change.
    pub fn urgent(&self) -> watch::Receiver<u64> {
        self.urgent.subscribe()
    }

    /// The pods that reported, with the bundle version each said it enforces.
    pub fn reporters(&self) -> BTreeMap<Key, Option<String>> {
        let state = self.state.lock().expect("usage lock");
        state
            .reporters
            .iter()
            .map(|(k, r)| (k.clone(), r.bundle_version.clone()))
            .collect()
    }
}

//! Process faults (`/processes`, an extension of the Toxiproxy API): kill with
//! a signal, pause (SIGSTOP) and resume (SIGCONT), by pid or by the name of a
//! command the agent started. Every fault is exported as a span. Answers are
//! `seismo_api::toxiproxy::Process`; request bodies are
//! `seismo_api::toxiproxy::{ProcessStart, ProcessFault}` (a command as argv or
//! one string, a signal as name or number).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use opentelemetry::KeyValue;
use seismo_api::toxiproxy::{self as wire, CommandLine, ProcessFault, ProcessStart, SignalSpec};

use crate::error::ChaosError;
use crate::faults::{Fault, FaultSink};
use crate::model::{Kind, Stream, Toxic};

/// A command the agent started.
struct Started {
    name: String,
    command: Vec<String>,
    /// `None` while running; the exit status text once it ended.
    exit: Arc<Mutex<Option<String>>>,
}

/// Which commands `POST /processes` may start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CommandPolicy {
    /// Any command (the agent runs it as its own user).
    #[default]
    Any,
    /// None: `--no-processes`.
    Refuse,
    /// Only these programs (`--allow-command`), matched on the command's first
    /// word as given, or its file name when a bare name is listed.
    Allow(Vec<String>),
}

impl CommandPolicy {
    /// # Errors
    /// [`ChaosError::CommandRefused`] naming the flag that refused `program`.
    fn check(&self, program: &str) -> Result<(), ChaosError> {
        match self {
            CommandPolicy::Any => Ok(()),
            CommandPolicy::Refuse => {
                Err(ChaosError::CommandRefused("starting commands is turned off on this agent (--no-processes)".into()))
            }
            CommandPolicy::Allow(allowed) => {
                let file_name = program.rsplit('/').next().unwrap_or(program);
                let ok = allowed.iter().any(|a| a == program || (!a.contains('/') && a == file_name));
                if ok {
                    Ok(())
                } else {
                    Err(ChaosError::CommandRefused(format!(
                        "{program:?} is not in this agent's --allow-command list ({})",
                        allowed.join(", ")
                    )))
                }
            }
        }
    }
}

#[derive(Default)]
pub struct Processes {
    policy: CommandPolicy,
    started: Mutex<BTreeMap<u32, Started>>,
    /// Pids this agent stopped and has not resumed: resumed on shutdown.
    paused: Mutex<Vec<u32>>,
}

/// The signals that may be named (any valid signal may be given by number).
const SIGNALS: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGKILL,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTERM,
    Signal::SIGSTOP,
    Signal::SIGCONT,
];

/// `"SIGKILL"`, `"KILL"`, `"kill"` or `9`.
///
/// # Errors
/// [`ChaosError::BadBody`] listing the names understood.
pub fn parse_signal(v: &SignalSpec) -> Result<Signal, ChaosError> {
    let bad = || {
        let v = match v {
            SignalSpec::Number(n) => n.to_string(),
            SignalSpec::Name(s) => format!("{s:?}"),
        };
        ChaosError::bad_body(format!("unknown signal {v}; use a number or one of SIGHUP SIGINT SIGQUIT SIGKILL SIGUSR1 SIGUSR2 SIGTERM SIGSTOP SIGCONT"))
    };
    match v {
        SignalSpec::Number(n) => {
            let n = Some(*n).filter(|s| (1..=64).contains(s)).ok_or_else(bad)?;
            Signal::try_from(n as i32).map_err(|_| bad())
        }
        SignalSpec::Name(s) => {
            let up = s.to_ascii_uppercase();
            let name = format!("SIG{}", up.strip_prefix("SIG").unwrap_or(&up));
            SIGNALS.iter().find(|sig| sig.as_str() == name).copied().ok_or_else(bad)
        }
    }
}

fn send_signal(pid: u32, sig: Signal) -> Result<(), ChaosError> {
    if pid == 0 || pid > i32::MAX as u32 || pid == std::process::id() {
        return Err(ChaosError::RefusedPid(pid));
    }
    nix::sys::signal::kill(Pid::from_raw(pid as i32), sig).map_err(|e| match e {
        Errno::ESRCH => ChaosError::NoSuchPid(pid),
        Errno::EPERM => ChaosError::SignalDenied(pid),
        source => ChaosError::Signal { pid, source },
    })
}

/// `running`, `stopped`, `zombie` or `gone`, from /proc.
pub(crate) fn state_of(pid: u32) -> &'static str {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return "gone" };
    // The state follows the command name, which is in parentheses and may hold spaces.
    match stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()) {
        Some('T') | Some('t') => "stopped",
        Some('Z') | Some('X') => "zombie",
        Some(_) => "running",
        None => "gone",
    }
}

impl Processes {
    /// No processes yet; `policy` decides which commands may be started.
    pub fn new(policy: CommandPolicy) -> Processes {
        Processes { policy, ..Processes::default() }
    }

    /// Starts `command` (argv) as a child of the agent.
    ///
    /// # Errors
    /// [`ChaosError::MissingField`] / [`ChaosError::BadBody`] for a bad body,
    /// [`ChaosError::CommandRefused`] when the policy forbids the program,
    /// [`ChaosError::ProcessRunning`] for a name in use, [`ChaosError::CannotStart`].
    pub fn start(&self, body: &ProcessStart) -> Result<wire::Process, ChaosError> {
        let argv: Vec<String> = match &body.command {
            Some(CommandLine::Argv(a)) if !a.is_empty() => a.clone(),
            Some(CommandLine::Line(s)) if !s.trim().is_empty() => s.split_whitespace().map(str::to_string).collect(),
            None => return Err(ChaosError::MissingField("command".into())),
            Some(_) => return Err(ChaosError::bad_body("command must not be empty")),
        };
        self.policy.check(&argv[0])?;
        let name = match &body.name {
            Some(s) if !s.is_empty() => s.clone(),
            _ => argv[0].rsplit('/').next().unwrap_or(&argv[0]).to_string(),
        };
        // One lock from the name check to the insert: two starts cannot both win.
        let mut started = self.started.lock().unwrap();
        if started.values().any(|p| p.name == name && p.exit.lock().unwrap().is_none()) {
            return Err(ChaosError::ProcessRunning(name));
        }
        let mut child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| ChaosError::CannotStart { command: argv[0].clone(), source })?;
        // A child that has not been waited for always has its pid.
        let pid = child.id().unwrap_or_default();
        let exit = Arc::new(Mutex::new(None));
        let exit_w = exit.clone();
        tokio::spawn(async move {
            let status = child.wait().await.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            *exit_w.lock().unwrap() = Some(status);
        });
        started.insert(pid, Started { name, command: argv, exit });
        drop(started);
        Ok(self.describe(pid))
    }

    /// Every command the agent started, by pid.
    pub fn list(&self) -> Vec<wire::Process> {
        let pids: Vec<u32> = self.started.lock().unwrap().keys().copied().collect();
        pids.into_iter().map(|p| self.describe(p)).collect()
    }

    /// The pid or name of a command this agent started. Only those can be signalled:
    /// the agent's API must not become a way to stop any process its user may signal
    /// (403 for any other pid). A started command that has exited is 410 Gone: its pid
    /// may belong to another process now.
    pub fn resolve(&self, target: &str) -> Result<u32, ChaosError> {
        let started = self.started.lock().unwrap();
        let gone = |pid: u32, p: &Started| {
            let exit = p.exit.lock().unwrap().clone()?;
            Some(ChaosError::ProcessExited { name: p.name.clone(), pid, exit })
        };
        if let Ok(pid) = target.parse::<u32>() {
            let Some(p) = started.get(&pid) else {
                return Err(ChaosError::NotStartedByAgent(pid));
            };
            if let Some(e) = gone(pid, p) {
                return Err(e);
            }
            return Ok(pid);
        }
        let mut exited = None;
        for (pid, p) in started.iter().filter(|(_, p)| p.name == target) {
            match gone(*pid, p) {
                None => return Ok(*pid),
                Some(e) => exited = Some(e),
            }
        }
        Err(exited.unwrap_or_else(|| ChaosError::NoSuchProcess(target.to_string())))
    }

    /// A started command, running or not (for GET and DELETE).
    pub fn resolve_any(&self, target: &str) -> Result<u32, ChaosError> {
        match self.resolve(target) {
            Err(e @ ChaosError::ProcessExited { .. }) => {
                let started = self.started.lock().unwrap();
                let pid = target.parse::<u32>().ok().filter(|p| started.contains_key(p));
                pid.or_else(|| started.iter().find(|(_, p)| p.name == target).map(|(pid, _)| *pid)).ok_or(e)
            }
            other => other,
        }
    }

    /// A pid as the API shows it: what the agent knows of it, and its state now.
    pub fn describe(&self, pid: u32) -> wire::Process {
        let started = self.started.lock().unwrap();
        match started.get(&pid) {
            Some(p) => {
                let exit = p.exit.lock().unwrap().clone();
                let state = if exit.is_some() { "exited" } else { state_of(pid) };
                wire::Process {
                    command: Some(p.command.clone()),
                    exit: Some(exit),
                    name: Some(p.name.clone()),
                    pid,
                    signal: None,
                    started_by_agent: true,
                    state: state.to_string(),
                }
            }
            None => wire::Process {
                command: None,
                exit: None,
                name: None,
                pid,
                signal: None,
                started_by_agent: false,
                state: state_of(pid).to_string(),
            },
        }
    }

    /// `kill` (with `signal`, default SIGTERM), `pause` or `resume`.
    ///
    /// # Errors
    /// What [`Processes::resolve`] refuses, [`ChaosError::UnknownAction`], a bad
    /// signal, or what kill(2) answers.
    pub fn fault(
        &self,
        target: &str,
        action: &str,
        body: &ProcessFault,
        faults: &FaultSink,
    ) -> Result<wire::Process, ChaosError> {
        let pid = self.resolve(target)?;
        let started_at = SystemTime::now();
        let sig = match action {
            "kill" => match &body.signal {
                None => Signal::SIGTERM,
                Some(v) => parse_signal(v)?,
            },
            "pause" => Signal::SIGSTOP,
            "resume" => Signal::SIGCONT,
            _ => return Err(ChaosError::UnknownAction(action.to_string())),
        };
        send_signal(pid, sig)?;
        {
            let mut paused = self.paused.lock().unwrap();
            paused.retain(|p| *p != pid);
            if sig == Signal::SIGSTOP {
                paused.push(pid);
            }
        }
        let mut description = self.describe(pid);
        description.signal = Some(sig.as_str().to_string());
        let command = description.command.as_ref().and_then(|c| serde_json::to_string(c).ok()).unwrap_or_default();
        let action: &'static str = match action {
            "kill" => "kill",
            "pause" => "pause",
            _ => "resume",
        };
        let toxic = Toxic {
            id: 0,
            name: format!("{action}_{pid}"),
            kind: Kind::Process { action, signal: sig as i32 },
            stream: Stream::Upstream,
            toxicity: 1.0,
            experiment: body.experiment.clone(),
        };
        faults.record(Fault {
            proxy: "",
            toxic: &toxic,
            parent: None,
            start: started_at,
            end: SystemTime::now(),
            error: (action == "kill").then(|| format!("process {pid} sent {}", sig.as_str())),
            attributes: vec![
                KeyValue::new("chaos.process.pid", pid as i64),
                KeyValue::new("chaos.process.action", action.to_string()),
                KeyValue::new("chaos.process.signal", sig.as_str()),
                KeyValue::new("chaos.process.command", command),
            ],
        });
        Ok(description)
    }

    /// Forgets a started command, killing it first if it still runs.
    pub fn remove(&self, target: &str) -> Result<(), ChaosError> {
        let pid = self.resolve_any(target)?;
        let entry = self.started.lock().unwrap().remove(&pid);
        let Some(p) = entry else {
            return Err(ChaosError::NoSuchPid(pid));
        };
        if p.exit.lock().unwrap().is_none() {
            let _ = send_signal(pid, Signal::SIGCONT);
            let _ = send_signal(pid, Signal::SIGKILL);
        }
        Ok(())
    }

    /// On agent shutdown: resume what we paused, stop what we started.
    pub fn shutdown(&self) {
        for pid in self.paused.lock().unwrap().drain(..) {
            let _ = send_signal(pid, Signal::SIGCONT);
        }
        for (pid, p) in self.started.lock().unwrap().iter() {
            if p.exit.lock().unwrap().is_none() {
                let _ = send_signal(*pid, Signal::SIGTERM);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_policy_refuses_what_it_does_not_allow() {
        assert!(CommandPolicy::Any.check("/bin/sh").is_ok());
        let off = CommandPolicy::Refuse.check("sleep").unwrap_err();
        assert_eq!((off.status(), off.to_string().contains("--no-processes")), (403, true));
        let list = CommandPolicy::Allow(vec!["sleep".into(), "/opt/app/bin/server".into()]);
        assert!(list.check("sleep").is_ok());
        assert!(list.check("/usr/bin/sleep").is_ok(), "a bare name matches any path's file name");
        assert!(list.check("/opt/app/bin/server").is_ok());
        assert!(list.check("/tmp/server").is_err(), "a listed path matches only itself");
        let e = list.check("/bin/sh").unwrap_err();
        assert!(e.to_string().contains("\"/bin/sh\" is not in this agent's --allow-command list"), "{e}");
    }

    #[test]
    fn signals_by_name_or_number() {
        let name = |s: &str| SignalSpec::Name(s.into());
        assert_eq!(parse_signal(&name("SIGKILL")).unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal(&name("term")).unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal(&SignalSpec::Number(9)).unwrap(), Signal::SIGKILL);
        let e = parse_signal(&name("SIGNOPE")).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("unknown signal \"SIGNOPE\""), "{e}");
        assert_eq!(parse_signal(&SignalSpec::Number(0)).unwrap_err().status(), 400);
    }

    #[test]
    fn proc_state_of_ourselves_is_running() {
        assert_eq!(state_of(std::process::id()), "running");
        assert_eq!(state_of(u32::MAX - 1), "gone");
    }
}

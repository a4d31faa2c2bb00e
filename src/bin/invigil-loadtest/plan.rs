//! Who connects where: the simulated students and proctors of a run, their ids and tokens,
//! the instance each one connects to, the loopback address it connects from, and which of
//! them this shard (process) runs.
//!
//! Every shard computes the same plan from the same flags and runs its own slice of it, so a
//! run split over several processes needs no coordination beyond `--run-id` and
//! `--start-at-ms`.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    str::FromStr,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context};
use invigil::{
    auth::{mint, Claims, Role},
    config::Secret,
    protocol::ids::{AttemptId, QuizId},
};

/// How long the tokens of a run stay valid past its planned end.
const TOKEN_SLACK_SECS: u64 = 3600;

/// Where students sit relative to their quiz's proctors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// All students of quiz `q` on target `q mod k`, its proctors on target `q+1 mod k`: with
    /// two or more targets every status crosses instances (the worst case for routing).
    Cross,
    /// Students round-robin over the targets, proctors of quiz `q` on target `q mod k`: with
    /// `k` targets, `(k-1)/k` of the statuses cross instances, as behind a load balancer.
    Spread,
}

/// `i/n`: this process runs the clients whose index is `i` modulo `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or("expected i/n, e.g. 0/2")?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("bad shard index {i:?}"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("bad shard count {n:?}"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: need 0 <= i < n"));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    fn owns(&self, index: usize) -> bool {
        index % self.count == self.index
    }
}

/// One instance to connect to.
#[derive(Clone, Debug)]
pub struct Target {
    /// Where the TCP connection goes.
    pub addr: SocketAddr,
    /// `scheme://host:port/path` without a query: `/ws` unless the URL names a path.
    pub endpoint: String,
}

impl Target {
    /// Parse `ws://host:port[/path]` and resolve the host.
    pub async fn resolve(url: &str) -> anyhow::Result<Target> {
        let Some(rest) = url.strip_prefix("ws://") else {
            bail!("target {url:?}: only ws:// URLs are supported (TLS belongs to the proxy)");
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/ws"),
        };
        let authority_with_port = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&authority_with_port)
            .await
            .with_context(|| format!("resolving {authority_with_port}"))?
            .find(SocketAddr::is_ipv4)
            .with_context(|| format!("{authority_with_port} has no IPv4 address"))?;
        Ok(Target {
            addr,
            endpoint: format!("ws://{authority}{path}"),
        })
    }
}

/// The shape of a run, from the command line.
#[derive(Clone, Debug)]
pub struct Shape {
    pub run_id: String,
    pub students: usize,
    pub students_per_quiz: usize,
    pub proctors_per_quiz: usize,
    pub placement: Placement,
    pub shard: Shard,
    /// Planned length of the whole run, for the tokens' expiry.
    pub lifetime_secs: u64,
}

impl Shape {
    pub fn quizzes(&self) -> usize {
        self.students.div_ceil(self.students_per_quiz)
    }
}

/// One simulated student of this shard.
pub struct StudentPlan {
    /// Index of its quiz in the run (0-based), for per-quiz counts.
    pub quiz: usize,
    pub quiz_id: String,
    pub attempt_id: String,
    pub student_id: String,
    pub name: String,
    pub token: String,
    pub target: usize,
    pub source: IpAddr,
}

/// One simulated proctor of this shard, watching one quiz.
pub struct ProctorPlan {
    pub quiz: usize,
    pub quiz_id: String,
    pub token: String,
    pub target: usize,
    pub source: IpAddr,
}

/// The clients this shard runs.
pub struct Plan {
    pub students: Vec<StudentPlan>,
    pub proctors: Vec<ProctorPlan>,
}

/// A run id may only hold characters that need no escaping in JSON, URLs or Redis keys.
pub fn check_run_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty()
        || id.len() > 32
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("run id {id:?}: use 1 to 32 of [A-Za-z0-9_-]");
    }
    Ok(())
}

pub fn quiz_id(run: &str, quiz: usize) -> String {
    format!("{run}-q{quiz}")
}

impl Plan {
    pub fn build(
        shape: &Shape,
        targets: usize,
        sources: &[IpAddr],
        secret: &Secret,
    ) -> anyhow::Result<Plan> {
        if targets == 0 || sources.is_empty() {
            bail!("need at least one target and one source address");
        }
        if shape.students_per_quiz == 0 {
            bail!("--students-per-quiz must be at least 1");
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs();
        let exp = now + shape.lifetime_secs + TOKEN_SLACK_SECS;
        let run = &shape.run_id;
        let mut students = Vec::new();
        for index in (0..shape.students).filter(|&i| shape.shard.owns(i)) {
            let quiz = index / shape.students_per_quiz;
            let quiz_id = quiz_id(run, quiz);
            let attempt_id = format!("{run}-a{index}");
            let student_id = format!("{run}-s{index}");
            let name = format!("Student {index}");
            let token = mint(
                secret,
                &Claims {
                    sub: student_id.clone(),
                    role: Role::Student,
                    exp,
                    quiz_id: Some(QuizId::new(&quiz_id)),
                    attempt_id: Some(AttemptId::new(&attempt_id)),
                    name: Some(name.clone()),
                    quizzes: Vec::new(),
                },
            )
            .context("signing a student token")?;
            let target = match shape.placement {
                Placement::Cross => quiz % targets,
                Placement::Spread => index % targets,
            };
            students.push(StudentPlan {
                quiz,
                quiz_id,
                attempt_id,
                student_id,
                name,
                token,
                target,
                source: sources[index % sources.len()],
            });
        }
        let mut proctors = Vec::new();
        let total_proctors = shape.quizzes() * shape.proctors_per_quiz;
        for index in (0..total_proctors).filter(|&i| shape.shard.owns(i)) {
            let quiz = index / shape.proctors_per_quiz;
            let quiz_id = quiz_id(run, quiz);
            let token = mint(
                secret,
                &Claims {
                    sub: format!("{run}-p{index}"),
                    role: Role::Proctor,
                    exp,
                    quiz_id: None,
                    attempt_id: None,
                    name: Some(format!("Proctor {index}")),
                    quizzes: vec![QuizId::new(&quiz_id)],
                },
            )
            .context("signing a proctor token")?;
            let target = match shape.placement {
                Placement::Cross => (quiz + 1) % targets,
                Placement::Spread => quiz % targets,
            };
            proctors.push(ProctorPlan {
                quiz,
                quiz_id,
                token,
                target,
                // Proctors take the addresses from the end of the list, so that with few
                // students they still spread over the sources.
                source: sources[sources.len() - 1 - index % sources.len()],
            });
        }
        Ok(Plan { students, proctors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(shard: &str, placement: Placement) -> Shape {
        Shape {
            run_id: "t".into(),
            students: 10,
            students_per_quiz: 4,
            proctors_per_quiz: 1,
            placement,
            shard: shard.parse().unwrap(),
            lifetime_secs: 60,
        }
    }

    #[test]
    fn shards_split_the_clients_without_overlap() {
        let secret = Secret::new("s");
        let src = ["127.0.0.1".parse().unwrap()];
        let a = Plan::build(&shape("0/2", Placement::Cross), 2, &src, &secret).unwrap();
        let b = Plan::build(&shape("1/2", Placement::Cross), 2, &src, &secret).unwrap();
        assert_eq!(a.students.len() + b.students.len(), 10);
        assert_eq!(a.proctors.len() + b.proctors.len(), 3);
        assert_eq!(a.students[1].attempt_id, "t-a2");
    }

    #[test]
    fn cross_placement_puts_proctors_away_from_their_students() {
        let secret = Secret::new("s");
        let src = ["127.0.0.1".parse().unwrap()];
        let plan = Plan::build(&shape("0/1", Placement::Cross), 2, &src, &secret).unwrap();
        for p in &plan.proctors {
            assert!(plan
                .students
                .iter()
                .filter(|s| s.quiz == p.quiz)
                .all(|s| s.target != p.target));
        }
    }

    #[test]
    fn shard_and_run_id_are_checked() {
        assert!("2/2".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
        assert!(check_run_id("bench-1_a").is_ok());
        assert!(check_run_id("a b").is_err());
    }
}

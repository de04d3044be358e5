//! The deployment's flags, one spelling and one environment variable per setting, flattened
//! into every binary: a worker (`palermo::cli`), the `palermo` admin command and its
//! subcommands. A deployment sets the environment once and every process agrees.

use crate::{broker::priority::Priorities, broker::topology};

use super::Deployment;

/// Where `--help` lists these flags, apart from the binary's own.
const HEADING: &str = "Deployment (the same for every worker and admin command)";

/// `--amqp-url`, `--queue-type`, `--max-priority QUEUE=N`, `--failed-queue`,
/// `--events-exchange`, `--scheduler-queue`, each also read from its `PALERMO_*` variable;
/// see [`Deployment`] for what each means.
#[derive(Debug, Clone, clap::Args)]
pub struct DeploymentArgs {
    /// RabbitMQ URL, or the nodes of a cluster as a comma-separated list of URLs.
    // The variable's value is not shown in --help: the URL may hold a password.
    #[arg(
        long,
        global = true,
        help_heading = HEADING,
        env = "PALERMO_AMQP_URL",
        hide_env_values = true,
        default_value = crate::DEFAULT_AMQP_URL
    )]
    pub amqp_url: String,
    /// Type of every queue the deployment declares: classic or quorum (for replicated
    /// clusters); the same for every client, worker and admin command.
    #[arg(
        long,
        global = true,
        help_heading = HEADING,
        env = "PALERMO_QUEUE_TYPE",
        default_value = "classic"
    )]
    pub queue_type: topology::QueueType,
    /// Declare QUEUE as a priority queue with this x-max-priority (QUEUE=N, N from 1 to 255;
    /// repeat, or comma-separate, for more queues; classic queues, or quorum queues on
    /// RabbitMQ 4.0): the same list for every client, worker and admin command. Defaults to
    /// none.
    #[arg(
        long,
        global = true,
        help_heading = HEADING,
        env = "PALERMO_MAX_PRIORITY",
        value_name = "QUEUE=N",
        value_delimiter = ',',
        value_parser = Priorities::parse_flag
    )]
    pub max_priority: Vec<(String, u8)>,
    /// Queue failed jobs go to (and the admin commands record from).
    #[arg(long, global = true,
        help_heading = HEADING, env = "PALERMO_FAILED_QUEUE", default_value = topology::FAILED_QUEUE)]
    pub failed_queue: String,
    /// Topic exchange (and queue) the workers' heartbeats go to.
    #[arg(long, global = true,
        help_heading = HEADING, env = "PALERMO_EVENTS_EXCHANGE", default_value = topology::EVENTS_EXCHANGE)]
    pub events_exchange: String,
    /// Queue the schedulers of periodic jobs elect their leader through.
    #[arg(long, global = true,
        help_heading = HEADING, env = "PALERMO_SCHEDULER_QUEUE", default_value = topology::SCHEDULER_QUEUE)]
    pub scheduler_queue: String,
    /// Topic exchange operators' commands (pause, quiet, stop, cancel) reach workers through.
    #[arg(long, global = true,
        help_heading = HEADING, env = "PALERMO_CONTROL_EXCHANGE", default_value = topology::CONTROL_EXCHANGE)]
    pub control_exchange: String,
}

impl DeploymentArgs {
    /// The deployment these flags describe (not validated yet: [`Deployment::validate`]).
    pub fn deployment(&self) -> Deployment {
        Deployment {
            amqp_url: self.amqp_url.clone(),
            queue_type: self.queue_type,
            priorities: self.max_priority.iter().cloned().collect(),
            failed_queue: self.failed_queue.clone(),
            events_exchange: self.events_exchange.clone(),
            scheduler_queue: self.scheduler_queue.clone(),
            control_exchange: self.control_exchange.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Binary {
        #[command(flatten)]
        deployment: DeploymentArgs,
    }

    #[test]
    fn the_defaults_are_the_deployments() {
        let variables = ["AMQP_URL", "QUEUE_TYPE", "MAX_PRIORITY", "FAILED_QUEUE"];
        let variables =
            variables
                .into_iter()
                .chain(["EVENTS_EXCHANGE", "SCHEDULER_QUEUE", "CONTROL_EXCHANGE"]);
        if variables
            .into_iter()
            .any(|v| std::env::var_os(format!("PALERMO_{v}")).is_some())
        {
            return; // the environment of this run sets them
        }
        let parsed = Binary::try_parse_from(["binary"]).expect("no flags");
        assert_eq!(parsed.deployment.deployment(), Deployment::default());
    }

    #[test]
    fn priorities_repeat_or_comma_separate() {
        let parsed = Binary::try_parse_from([
            "binary",
            "--max-priority",
            "reports=10,mail=3",
            "--max-priority",
            "video=5",
            "--queue-type",
            "quorum",
        ])
        .expect("flags");
        let deployment = parsed.deployment.deployment();
        assert_eq!(deployment.priorities.of("reports"), Some(10));
        assert_eq!(deployment.priorities.of("mail"), Some(3));
        assert_eq!(deployment.priorities.of("video"), Some(5));
        assert_eq!(deployment.queue_type, topology::QueueType::Quorum);
        assert!(Binary::try_parse_from(["binary", "--max-priority", "reports"]).is_err());
    }
}

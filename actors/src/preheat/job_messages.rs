//! The preheat jobs' messages and how the `PreheatManager` keeps its jobs in step with the
//! image preheats they follow.
//!
//! A job ends when its preheat does (success or failure), when its preheat record is deleted,
//! or when its own timeout passes, whichever comes first; nothing polls. A job that finds its
//! image already preheated ends at once, so Harbor sees SUCCESS at its first poll.

use actix::prelude::*;

use super::job_record::{JobArgs, JobId, JobOutcome, JobState, LayerOutcome, PreheatJob};
use super::record::{Preheat, PreheatRequest, PreheatStatus, PreheatType, RegistryAuth};
use super::PreheatManager;
use crate::ids::PreheatId;

/// The scope a job gets when it names none (the Dragonfly 2 manager's default).
pub const DEFAULT_SCOPE: &str = "single_seed_peer";

impl PreheatManager {
    /// The outcome of a finished image preheat: its error and its layers that are done.
    fn outcome_of(&self, image: &Preheat) -> JobOutcome {
        let layers = image
            .children
            .iter()
            .filter_map(|child| self.records.get(child))
            .filter_map(|layer| match layer.status {
                PreheatStatus::Success => Some(LayerOutcome { url: layer.url.clone(), error: None }),
                PreheatStatus::Failed => {
                    Some(LayerOutcome { url: layer.url.clone(), error: Some(layer.error_msg.clone()) })
                }
                PreheatStatus::Waiting | PreheatStatus::Running => None,
            })
            .collect();
        let error = (image.status == PreheatStatus::Failed).then(|| image.error_msg.clone());
        JobOutcome { error, layers, seed: self.seed.clone() }
    }

    /// Ends a pending job; `false` if it was not pending.
    fn end_job(&mut self, id: JobId, state: JobState, outcome: JobOutcome) -> bool {
        let now = self.now();
        let Some(job) = self.book.get_mut(id).filter(|j| j.state == JobState::Pending) else { return false };
        job.state = state;
        job.updated_at = now;
        match &outcome.error {
            None => tracing::info!(job = %id, preheat = %job.preheat, state = state.as_str(), "preheat job ended"),
            Some(error) => {
                tracing::warn!(job = %id, preheat = %job.preheat, state = state.as_str(), %error, "preheat job ended")
            }
        }
        job.outcome = Some(outcome);
        true
    }

    /// Ends the pending jobs following `preheat` if it is over (finished or gone). Whether any
    /// job changed, so the caller persists.
    pub(super) fn settle_jobs_of(&mut self, preheat: &PreheatId) -> bool {
        let waiting = self.book.pending_on(preheat);
        if waiting.is_empty() {
            return false;
        }
        let (state, outcome) = match self.records.get(preheat) {
            Some(r) if !r.status.finished() => return false,
            Some(r) if r.status == PreheatStatus::Success => (JobState::Success, self.outcome_of(r)),
            Some(r) => (JobState::Failure, self.outcome_of(r)),
            None => {
                let error = Some(format!("preheat {preheat} was deleted before it finished"));
                (JobState::Failure, JobOutcome { error, layers: Vec::new(), seed: self.seed.clone() })
            }
        };
        let mut changed = false;
        for id in waiting {
            changed |= self.end_job(id, state, outcome.clone());
        }
        changed
    }

    /// Fails `id` with its timeout if it is still pending then.
    pub(super) fn arm_job_deadline(&mut self, id: JobId, ctx: &mut Context<Self>) {
        let Some(job) = self.book.get(id) else { return };
        let wait = (job.deadline() - self.now()).to_std().unwrap_or_default();
        let timer =
            actix::fut::wrap_future::<_, Self>(self.clock.sleep(wait)).map(move |(), act, _| act.expire_job(id));
        ctx.spawn(timer);
    }

    fn expire_job(&mut self, id: JobId) {
        let Some(job) = self.book.get(id).filter(|j| j.state == JobState::Pending) else { return };
        let mut outcome = match self.records.get(&job.preheat) {
            Some(image) => self.outcome_of(image),
            None => JobOutcome { error: None, layers: Vec::new(), seed: self.seed.clone() },
        };
        outcome.error = Some(format!("not finished within its timeout of {}s", job.args.timeout.as_secs()));
        if self.end_job(id, JobState::Failure, outcome) {
            self.persist();
        }
    }

    /// After a restart: jobs whose preheat ended (or went) meanwhile end, the others wait again.
    pub(super) fn resume_jobs(&mut self, ctx: &mut Context<Self>) {
        let mut changed = false;
        for preheat in self.book.followed() {
            changed |= self.settle_jobs_of(&preheat);
        }
        let pending: Vec<JobId> = self.book.all().filter(|j| j.state == JobState::Pending).map(|j| j.id).collect();
        for id in pending {
            self.arm_job_deadline(id, ctx);
        }
        if changed {
            self.persist();
        }
    }
}

/// Starts a job: an image preheat of `args.url` with `args.headers` sent as given. A
/// `timeout` of zero and an empty `scope` take their defaults. The reply is the job as
/// created (PENDING); one whose image is already preheated has ended by the time it is read.
#[derive(Message, Debug)]
#[rtype(result = "PreheatJob")]
pub struct CreateJob(pub JobArgs);

impl Handler<CreateJob> for PreheatManager {
    type Result = MessageResult<CreateJob>;

    fn handle(&mut self, msg: CreateJob, ctx: &mut Context<Self>) -> Self::Result {
        let mut args = msg.0;
        if args.timeout.is_zero() {
            args.timeout = self.config.timeout;
        }
        if args.scope.is_empty() {
            args.scope = DEFAULT_SCOPE.to_string();
        }
        let request = PreheatRequest {
            kind: PreheatType::Image,
            url: args.url.clone(),
            filter: args.filtered_query_params.clone(),
            identifier: String::new(),
            headers: args.headers.clone(),
            registry_auth: RegistryAuth::AsGiven,
        };
        let preheat = self.create(request, None, None, ctx).into_id();
        let now = self.now();
        let job = PreheatJob {
            id: self.book.issue(),
            preheat,
            args,
            state: JobState::Pending,
            created_at: now,
            updated_at: now,
            outcome: None,
        };
        tracing::info!(job = %job.id, preheat = %job.preheat, url = %job.args.url, "preheat job created");
        self.book.insert(job.clone());
        self.arm_job_deadline(job.id, ctx);
        self.settle_jobs_of(&job.preheat);
        self.persist();
        MessageResult(job)
    }
}

#[derive(Message, Debug)]
#[rtype(result = "Option<PreheatJob>")]
pub struct GetJob(pub JobId);

impl Handler<GetJob> for PreheatManager {
    type Result = Option<PreheatJob>;

    fn handle(&mut self, msg: GetJob, _ctx: &mut Context<Self>) -> Option<PreheatJob> {
        self.book.get(msg.0).cloned()
    }
}

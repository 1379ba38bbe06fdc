package dispatcher

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the dispatcher's Prometheus series, namespace warngate.
type Metrics struct {
	Warnings        *prometheus.CounterVec   // level, status
	Jobs            *prometheus.CounterVec   // channel, outcome
	Recipients      *prometheus.CounterVec   // channel, state
	Reports         *prometheus.CounterVec   // channel, outcome
	Latency         *prometheus.HistogramVec // channel, stage
	PlanSeconds     prometheus.Histogram
	Escalations     prometheus.Counter
	Acks            *prometheus.CounterVec   // method
	Replies         *prometheus.CounterVec   // outcome
	ProviderSeconds *prometheus.HistogramVec // channel
	// CallRecipients is how many recipients each provider call carried.
	CallRecipients *prometheus.HistogramVec // channel
	// InFlight is how many recipients this process has handed to a
	// provider that cannot be asked what it accepted and whose answer is
	// not yet recorded: those a crash of the process now would leave to
	// be sent again (dispatch.uncertain_bound bounds them).
	InFlight       *prometheus.GaugeVec   // channel
	CircuitsOpened *prometheus.CounterVec // provider, reason
	Segments       *prometheus.CounterVec // channel, provider
	Unreplicated   prometheus.Counter
	Resumed        *prometheus.CounterVec // type
	// VoiceCalls counts calls by how they ended, per provider account;
	// VoiceMinutes the minutes each account bills for them.
	VoiceCalls   *prometheus.CounterVec // provider, outcome
	VoiceMinutes *prometheus.CounterVec // provider

	// EscalationLateness is how long after it was due a step was taken.
	EscalationLateness prometheus.Histogram
	// DutyFallback counts counties and townships whose duty schedule had
	// nobody on duty when a warning arrived, by level.
	DutyFallback *prometheus.CounterVec
	// WorkersPolling is how many of this process's queue servers poll: 0
	// while all are stopped for want of work.
	WorkersPolling prometheus.Gauge
	// IdleStops counts the times the last of them stopped.
	IdleStops prometheus.Counter
	// SweepFailures counts looks for work in Redis that failed, after
	// which every server polls.
	SweepFailures prometheus.Counter
	// FallbackVisits counts residents no channel reached put on their
	// village's call list, by level.
	FallbackVisits *prometheus.CounterVec
}

// NewMetrics registers the dispatcher's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		Warnings: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warngate", Name: "warnings_total",
			Help: "Warnings accepted, by level and status.",
		}, []string{"level", "status"}),
		Jobs: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warngate", Name: "jobs_total",
			Help: "Delivery jobs (batches) run, by channel and outcome (ok, retry, failed, expired).",
		}, []string{"channel", "outcome"}),
		Recipients: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warngate", Name: "recipients_total",
			Help: "Recipients handled by delivery jobs, by channel and state (sent, failed, expired, skipped; uncertain: handed over again after a worker died with them at a provider that cannot be asked, so possibly twice).",
		}, []string{"channel", "state"}),
		Reports: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warngate", Name: "delivery_reports_total",
			Help: "Provider delivery reports, by channel and outcome (delivered, failed, duplicate, unknown; call: the report of a call the 叫应 checks placed, kept as a call and no delivery of its own).",
		}, []string{"channel", "outcome"}),
		Latency: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "warngate", Name: "delivery_latency_seconds",
			Help:    "Time from accepting a warning to a recipient's message being sent (accepted by the provider) or delivered.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800},
		}, []string{"channel", "stage"}),
		PlanSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: "warngate", Name: "plan_duration_seconds",
			Help:    "Time to expand a warning into batches and enqueue them.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		DutyFallback: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warngate", Name: "duty_fallback_total",
			Help: "Counties and townships whose duty schedule (值班表) had nobody on duty when a warning arrived, so that the roster's role holders were asked, by level.",
		}, []string{"level"}),
		WorkersPolling: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "warngate", Name: "workers_polling",
			Help: "How many of this process's queue servers (one per channel, plans, timers) poll Redis; each stops for want of work until a task is enqueued in its queues or falls due there (0: none polls).",
		}),
		IdleStops: f.NewCounter(prometheus.CounterOpts{
			Namespace: "warngate", Name: "workers_idle_stops_total",
			Help: "Times the last of this process's queue servers stopped polling for want of work.",
		}),
		SweepFailures: f.NewCounter(prometheus.CounterOpts{
			Namespace: "warngate", Name: "workers_sweep_failures_total",
			Help: "Looks in Redis for work by idle workers that failed; after one the queue servers poll rather than risk missing work.",
		}),
		FallbackVisits: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warngate", Name: "fallback_visits_total",
			Help: "Residents no channel reached put on their village's call list to be visited (fallback_after, or every channel failed), by level.",
		}, []string{"level"}),
		Escalations: f.NewCounter(prometheus.CounterOpts{
			Namespace: "warngate", Name: "escalation_steps_total",
			Help: "Escalation steps taken: reminders, officials put on the 未叫应 list, superiors told.",
		}),
		EscalationLateness: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: "warngate", Name: "escalation_lateness_seconds",
			Help:    "Time from when a reminder, escalation or call-list check was due to when it was taken.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300},
		}),
		Acks: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warngate", Name: "acknowledgements_total",
			Help: "Officials' confirmations of receipt (叫应), by method (link, sms, api).",
		}, []string{"method"}),
		Replies: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warngate", Name: "sms_replies_total",
			Help: "Replies from phones, by outcome (confirmed, nothing_pending, unknown_number, not_understood).",
		}, []string{"outcome"}),
		ProviderSeconds: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "warngate", Name: "provider_call_duration_seconds",
			Help:    "Duration of one provider call (one chunk of a batch).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"channel"}),
		CallRecipients: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "warngate", Name: "provider_call_recipients",
			Help:    "Recipients in one provider call (one chunk of a batch; the adapter may cut it into API calls of its own size, as Kannel's numbers_per_call): many numbers a call is what makes a provider fast.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}, []string{"channel"}),
		InFlight: f.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "warngate", Name: "provider_uncertain_recipients",
			Help: "Recipients this process has handed to a provider that cannot be asked what it accepted, its answer not yet recorded: those a crash of the process now would leave to be sent again, possibly twice (at most dispatch.uncertain_bound unless dispatch.chunk_size is set).",
		}, []string{"channel"}),
		CircuitsOpened: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warngate", Name: "provider_circuits_opened_total",
			Help: "Times a provider account was set aside for failover, by provider and reason (errors: failed calls in a row; silent: accepted batches left without delivery reports).",
		}, []string{"provider", "reason"}),
		Segments: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warngate", Name: "billed_segments_total",
			Help: "Message parts the providers bill for (an SMS of more than 70 characters is several), by channel and provider account.",
		}, []string{"channel", "provider"}),
		VoiceCalls: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warngate", Name: "voice_calls_total",
			Help: "Calls to officials (电话叫应) by how they ended (answered = pressed 1, no_key, hangup, no_answer, busy, rejected, unreachable, failed), by provider account.",
		}, []string{"provider", "outcome"}),
		VoiceMinutes: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warngate", Name: "voice_billed_minutes_total",
			Help: "Minutes the voice providers bill (every started minute of an answered call), by provider account.",
		}, []string{"provider"}),
		Resumed: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warngate", Name: "tasks_resumed_total",
			Help: "Tasks of a worker that stopped (no heartbeat for 5 s) or of a stalled plan, queued again under a new id, by task type.",
		}, []string{"type"}),
		Unreplicated: f.NewCounter(prometheus.CounterOpts{
			Namespace: "warngate", Name: "unreplicated_writes_total",
			Help: "Warnings accepted and officials' confirmations recorded while no Redis replica confirmed holding them (redis.replicas): a failover in that moment could lose them.",
		}),
	}
}

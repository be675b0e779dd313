package remotewrite

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the wire-side metrics. Create them once per process: a config
// reload replaces upstreams and rules, not the counters.
type Metrics struct {
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	series          *prometheus.CounterVec
	samples         *prometheus.CounterVec
	histograms      *prometheus.CounterVec
	exemplars       *prometheus.CounterVec
	collisions      prometheus.Counter
	rejected        *prometheus.CounterVec
	dryRun          *prometheus.CounterVec
	sorted          prometheus.Counter
	retriesRefused  *prometheus.CounterVec
	// retryRequestsRefused counts the 4xx answers behind retriesRefused.
	retryRequestsRefused *prometheus.CounterVec
	idleFlushes          prometheus.Counter
	invalid              *prometheus.CounterVec
	forwarded            *prometheus.CounterVec
	blanked              prometheus.Counter

	upstreamRequests  *prometheus.CounterVec
	upstreamDuration  *prometheus.HistogramVec
	upstreamFallbacks *prometheus.CounterVec
}

// NewMetrics registers the wire-side metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	proto := []string{"protocol"}
	return &Metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "requests_total",
			Help: "Remote-write requests received, by protocol (1.0, 2.0, unknown) and the HTTP code rwfix answered.",
		}, []string{"protocol", "code"}),
		requestDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "rwfix", Name: "request_duration_seconds",
			Help:    "Time from receiving a remote-write request to answering it, upstream round trips included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10),
		}, proto),
		series: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "series_received_total",
			Help: "Series received in decodable remote-write requests.",
		}, proto),
		samples: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "samples_received_total",
			Help: "Float samples received in decodable remote-write requests.",
		}, proto),
		histograms: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "histograms_received_total",
			Help: "Native histogram samples received in decodable remote-write requests.",
		}, proto),
		exemplars: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "exemplars_received_total",
			Help: "Exemplars received in decodable remote-write requests.",
		}, proto),
		rejected: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "requests_rejected_total",
			Help: "Requests refused for what they carry (answered 4xx, nothing forwarded) or for overload (429/503), by reason.",
		}, []string{"reason"}),
		retriesRefused: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "merge_retries_refused_total",
			Help: "Re-sent merged samples that an upstream refused with a 4xx, each alone (it had them already — a repeat older than its newest sample is out of order — or never will take them); final, the sender's batches are not affected.",
		}, []string{"upstream"}),
		retryRequestsRefused: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "merge_retry_requests_refused_total",
			Help: "Requests of re-sent merged samples that an upstream answered with a 4xx: one refused sample rolls back a whole RW 1.0 request, so such a request is split in halves until every sample is settled; none of them is a sender's batch.",
		}, []string{"upstream"}),
		idleFlushes: f.NewCounter(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "merge_idle_flushes_total",
			Help: "Times rwfix sent merged samples on its own, for a partition (tenant) whose sender had sent no request for longer than the merge's wait: they would otherwise have waited for its next request.",
		}),
		sorted: f.NewCounter(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "series_sorted_total",
			Help: "Series whose labels came out of name order (vmagent appends job and instance last); they were sorted, as Prometheus' receiver sorts them.",
		}),
		invalid: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "series_invalid_total",
			Help: "Series that Prometheus' receiver would skip (no metric name, empty or duplicate label name, invalid UTF-8), by reason; forwarded as they came, never repaired.",
		}, []string{"reason"}),
		dryRun: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "dry_run_series_total",
			Help: "With --dry-run: series the rules would have repaired (labels changed), merged (summed with another series) or dropped; everything was forwarded unchanged. A series can be both repaired and merged.",
		}, []string{"action"}),
		collisions: f.NewCounter(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "collisions_unrepaired_total",
			Help: "Rewrites undone because their output label set was another series' of the same request and could not be merged (keep_distinct corner cases, native histograms, full merge state); the series was forwarded unrepaired.",
		}),
		forwarded: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "batches_forwarded_total",
			Help: "Requests forwarded upstream, by how: original (untouched bytes) or reencoded (a rule changed them).",
		}, []string{"mode"}),
		blanked: f.NewCounter(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "forwarded_blanked_bytes_total",
			Help: "Bytes (decompressed) of dropped or changed series left in forwarded requests under an unknown protobuf field, which receivers skip, so that the sender's compressed bytes were reused (--upstream.max-blanked-share).",
		}),
		upstreamRequests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "upstream_requests_total",
			Help: "Requests sent to each upstream, by protocol and HTTP code (or error, timeout).",
		}, []string{"upstream", "protocol", "code"}),
		upstreamDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "rwfix", Name: "upstream_request_duration_seconds",
			Help:    "Round trip of one request to an upstream.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10),
		}, []string{"upstream"}),
		upstreamFallbacks: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix", Name: "upstream_protocol_fallbacks_total",
			Help: "Times an upstream showed that it does not speak RW 2.0, so rwfix switched it to RW 1.0.",
		}, []string{"upstream"}),
	}
}

// protoLabel is the protocol's metric label value.
func protoLabel(p string) string {
	switch p {
	case string(ProtoV1):
		return "1.0"
	case string(ProtoV2):
		return "2.0"
	}
	return "unknown"
}

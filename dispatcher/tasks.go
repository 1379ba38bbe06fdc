package dispatcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"warngate/channels"
	"warngate/warning"
)

// Task types, in asynq's domain:action style.
const (
	TypePlan = "plan:warning"
	// TypeDeliver is followed by the channel: deliver:sms.
	TypeDeliver = "deliver:"
)

// Tier orders the queues of one channel: urgent first, blue last.
type Tier string

// Tiers. Officials of orange and red warnings are urgent: they must act
// before the public hears, and their acknowledgement clock is running.
const (
	TierUrgent Tier = "urgent"
	TierRed    Tier = "red"
	TierOrange Tier = "orange"
	TierYellow Tier = "yellow"
	TierBlue   Tier = "blue"
)

// Tiers lists tiers from the most to the least pressing.
var Tiers = []Tier{TierUrgent, TierRed, TierOrange, TierYellow, TierBlue}

func tierOf(l warning.Level, a warning.Audience) Tier {
	if a.Official() && l >= warning.Orange {
		return TierUrgent
	}
	return Tier(l.String())
}

// QueueControl holds plan tasks.
const QueueControl = "control"

// QueueTimers holds the checks due at an instant: 叫应 reminders and
// escalations, call-list deadlines. Its workers are its own, so that a plan
// running for seconds on a city-wide warning never holds a check back.
const QueueTimers = "timers"

// QueueName is the asynq queue of a channel's tier: "sms.red".
func QueueName(ch warning.Channel, t Tier) string { return string(ch) + "." + string(t) }

// ChannelQueues lists a channel's queues with strict priorities for asynq.
func ChannelQueues(ch warning.Channel) map[string]int {
	m := make(map[string]int, len(Tiers))
	for i, t := range Tiers {
		m[QueueName(ch, t)] = len(Tiers) - i
	}
	return m
}

// planPayload is the body of a plan task.
type planPayload struct {
	WarningID string `json:"w"`
}

// deliverHeader opens a deliver task's payload; the recipients follow, one
// per line, so that a batch of a thousand costs a few tens of kilobytes.
type deliverHeader struct {
	WarningID string           `json:"w"`
	Channel   warning.Channel  `json:"ch"`
	Batch     int              `json:"n"`
	Audience  warning.Audience `json:"aud"`
	Notice    channels.Notice  `json:"notice"`
	Repeat    int              `json:"repeat,omitempty"`
}

// batchID is the task id of a batch: stable, so a plan that runs again is
// refused by the queue instead of sending twice.
func (h *deliverHeader) batchID() string {
	return fmt.Sprintf("%s/%s/%d", h.WarningID, h.Channel, h.Batch)
}

// encodeDeliver writes the header, then "@<division>" whenever the division
// changes, then "id\taddress\tname\tbucket" per recipient, the bucket by
// its number in the group of the batch's audience and the division
// (warning.BucketName); a recipient of a plan made before buckets has
// none, and no name may end the line early.
func encodeDeliver(h deliverHeader, rs []warning.Recipient) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(64 + len(rs)*40)
	if err := json.NewEncoder(&b).Encode(h); err != nil {
		return nil, err
	}
	div := ""
	for _, r := range rs {
		if strings.ContainsAny(r.ID+r.Address+r.Name, "\t\n") || strings.HasPrefix(r.ID, "@") {
			return nil, fmt.Errorf("recipient %q: tab, newline or leading @ in id, address or name", r.ID)
		}
		if r.Division != div {
			div = r.Division
			b.WriteByte('@')
			b.WriteString(div)
			b.WriteByte('\n')
		}
		b.WriteString(r.ID)
		b.WriteByte('\t')
		b.WriteString(r.Address)
		if r.Name != "" || r.Bucket != "" {
			b.WriteByte('\t')
			b.WriteString(r.Name)
		}
		if r.Bucket != "" {
			// the bucket's number in its group, which the audience and
			// division name: a few bytes a recipient
			b.WriteByte('\t')
			if n, ok := strings.CutPrefix(r.Bucket, warning.BucketGroup(r.Audience, r.Division)+"."); ok {
				b.WriteString(n)
			} else {
				b.WriteString(r.Bucket)
			}
		}
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

var errPayload = errors.New("malformed deliver payload")

func decodeDeliver(p []byte) (deliverHeader, []warning.Recipient, error) {
	var h deliverHeader
	line, rest, ok := bytes.Cut(p, []byte("\n"))
	if !ok {
		return h, nil, errPayload
	}
	if err := json.Unmarshal(line, &h); err != nil {
		return h, nil, fmt.Errorf("%w: %v", errPayload, err)
	}
	rs := make([]warning.Recipient, 0, bytes.Count(rest, []byte("\n")))
	// One string for the whole list: the recipients' fields are cut from
	// it, and a division's bucket names are made once each.
	body := string(rest)
	div, group := "", warning.BucketGroup(h.Audience, "")
	names := map[string]string{}
	for body != "" {
		var l string
		l, body, _ = strings.Cut(body, "\n")
		if strings.HasPrefix(l, "@") {
			div = l[1:]
			group = warning.BucketGroup(h.Audience, div)
			clear(names)
			continue
		}
		id, rest, ok := strings.Cut(l, "\t")
		if !ok {
			return h, nil, fmt.Errorf("%w: line %q", errPayload, l)
		}
		addr, rest, _ := strings.Cut(rest, "\t")
		name, bucket, _ := strings.Cut(rest, "\t")
		if bucket != "" && !strings.Contains(bucket, ".") {
			full, ok := names[bucket]
			if !ok {
				full = group + "." + bucket
				names[bucket] = full
			}
			bucket = full
		}
		rs = append(rs, warning.Recipient{ID: id, Address: addr, Name: name, Audience: h.Audience, Division: div, Bucket: bucket})
	}
	return h, rs, nil
}

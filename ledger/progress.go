package ledger

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"warngate/warning"
)

// Counts are the deliveries of one group by state. Pending is planned less
// those that reached a final state: queued, handed over or awaiting a report.
type Counts struct {
	Planned   int64 `json:"planned"`
	Sent      int64 `json:"sent"`
	Delivered int64 `json:"delivered"`
	Failed    int64 `json:"failed"`
	Expired   int64 `json:"expired"`
	Pending   int64 `json:"pending"`
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.Planned += o.Planned
	c.Sent += o.Sent
	c.Delivered += o.Delivered
	c.Failed += o.Failed
	c.Expired += o.Expired
	c.Pending += o.Pending
}

func (c *Counts) set(counter string, n int64) {
	switch counter {
	case "planned":
		c.Planned = n
	case "sent":
		c.Sent = n
	case "delivered":
		c.Delivered = n
	case "failed":
		c.Failed = n
	case "expired":
		c.Expired = n
	}
}

func (c *Counts) settle() {
	c.Pending = c.Planned - c.Delivered - c.Failed - c.Expired
	if c.Pending < 0 {
		c.Pending = 0
	}
}

// Done reports whether every planned delivery reached a final state.
func (c Counts) Done() bool { return c.Planned > 0 && c.Pending == 0 }

// Progress is a warning's delivery counters.
type Progress struct {
	// PlannedAt is when the fan-out plan was complete; zero while planning.
	PlannedAt time.Time
	Channels  map[warning.Channel]Counts
	Audiences map[warning.Channel]map[warning.Audience]Counts
	// Divisions holds counts for the division each recipient belongs to
	// (usually a village); callers roll them up the division tree.
	Divisions map[string]Counts
	// Reasons counts failures per channel and reason.
	Reasons map[warning.Channel]map[string]int64
	// Acks counts officials' confirmations per audience, and per the
	// division each official belongs to.
	Acks         map[warning.Audience]AckCounts
	AckDivisions map[string]AckCounts
	// Billing is what each provider account charges, per channel.
	Billing map[warning.Channel]map[string]Bill
	// Calls counts the voice channel's calls by outcome, and what each
	// provider account bills for them.
	Calls CallCounts
	// DutyFallback lists the counties and townships whose duty schedule had
	// nobody on duty, so that the roster's role holders were asked.
	DutyFallback []string
}

func (a *AckCounts) set(what string, n int64) {
	switch what {
	case "expected":
		a.Expected = n
	case "confirmed":
		a.Confirmed = n
	case "unreached":
		a.Unreached = n
	}
}

// Add adds o to a.
func (a *AckCounts) Add(o AckCounts) {
	a.Expected += o.Expected
	a.Confirmed += o.Confirmed
	a.Unreached += o.Unreached
	a.Waiting += o.Waiting
}

// Total sums every channel.
func (p *Progress) Total() Counts {
	var t Counts
	for _, c := range p.Channels {
		t.Add(c)
	}
	return t
}

// Progress reads a warning's counters.
func (l *Ledger) Progress(ctx context.Context, warningID string) (*Progress, error) {
	m, err := l.rdb.HGetAll(ctx, l.progressKey(warningID)).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: progress of %s: %w", warningID, err)
	}
	p := &Progress{
		Channels:     map[warning.Channel]Counts{},
		Audiences:    map[warning.Channel]map[warning.Audience]Counts{},
		Divisions:    map[string]Counts{},
		Reasons:      map[warning.Channel]map[string]int64{},
		Acks:         map[warning.Audience]AckCounts{},
		AckDivisions: map[string]AckCounts{},
		Billing:      map[warning.Channel]map[string]Bill{},
		Calls:        CallCounts{Outcomes: map[warning.CallOutcome]int64{}, Billing: map[string]CallBill{}},
	}
	for f, v := range m {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		if f == "planned" {
			p.PlannedAt = time.UnixMilli(n)
			continue
		}
		parts := strings.Split(f, "|")
		switch {
		case parts[0] == "c" && len(parts) == 3:
			ch := warning.Channel(parts[1])
			c := p.Channels[ch]
			c.set(parts[2], n)
			p.Channels[ch] = c
		case parts[0] == "a" && len(parts) == 4:
			ch, aud := warning.Channel(parts[1]), warning.Audience(parts[2])
			if p.Audiences[ch] == nil {
				p.Audiences[ch] = map[warning.Audience]Counts{}
			}
			c := p.Audiences[ch][aud]
			c.set(parts[3], n)
			p.Audiences[ch][aud] = c
		case parts[0] == "d" && len(parts) == 3:
			c := p.Divisions[parts[1]]
			c.set(parts[2], n)
			p.Divisions[parts[1]] = c
		case parts[0] == "k" && len(parts) == 3:
			a := p.Acks[warning.Audience(parts[1])]
			a.set(parts[2], n)
			p.Acks[warning.Audience(parts[1])] = a
		case parts[0] == "kd" && len(parts) == 3:
			a := p.AckDivisions[parts[1]]
			a.set(parts[2], n)
			p.AckDivisions[parts[1]] = a
		case parts[0] == "b" && len(parts) == 4:
			ch := warning.Channel(parts[1])
			if p.Billing[ch] == nil {
				p.Billing[ch] = map[string]Bill{}
			}
			b := p.Billing[ch][parts[2]]
			switch parts[3] {
			case "messages":
				b.Messages = n
			case "segments":
				b.Segments = n
			}
			p.Billing[ch][parts[2]] = b
		case parts[0] == "v" && len(parts) == 2:
			p.Calls.Outcomes[warning.CallOutcome(parts[1])] = n
		case parts[0] == "vb" && len(parts) == 3:
			b := p.Calls.Billing[parts[1]]
			switch parts[2] {
			case "calls":
				b.Calls = n
			case "minutes":
				b.Minutes = n
			}
			p.Calls.Billing[parts[1]] = b
		case parts[0] == "dfb" && len(parts) == 2:
			p.DutyFallback = append(p.DutyFallback, parts[1])
		case parts[0] == "r" && len(parts) == 3:
			if n <= 0 { // every failure with this reason re-opened
				continue
			}
			ch := warning.Channel(parts[1])
			if p.Reasons[ch] == nil {
				p.Reasons[ch] = map[string]int64{}
			}
			p.Reasons[ch][parts[2]] = n
		}
	}
	for ch, c := range p.Channels {
		c.settle()
		p.Channels[ch] = c
	}
	for _, auds := range p.Audiences {
		for a, c := range auds {
			c.settle()
			auds[a] = c
		}
	}
	for d, c := range p.Divisions {
		c.settle()
		p.Divisions[d] = c
	}
	for a, c := range p.Acks {
		c.Waiting = c.Expected - c.Confirmed - c.Unreached
		p.Acks[a] = c
	}
	for d, c := range p.AckDivisions {
		c.Waiting = c.Expected - c.Confirmed - c.Unreached
		p.AckDivisions[d] = c
	}
	slices.Sort(p.DutyFallback) // in code order
	return p, nil
}

// Totals reads only the per-channel counters of a warning, summed, and
// whether its plan is complete: a cheap check for "is it done yet".
func (l *Ledger) Totals(ctx context.Context, warningID string) (Counts, bool, error) {
	fields := []string{"planned"}
	counters := []string{"planned", "sent", "delivered", "failed", "expired"}
	for _, ch := range warning.Channels {
		for _, c := range counters {
			fields = append(fields, "c|"+string(ch)+"|"+c)
		}
	}
	vals, err := l.rdb.HMGet(ctx, l.progressKey(warningID), fields...).Result()
	if err != nil {
		return Counts{}, false, fmt.Errorf("ledger: totals of %s: %w", warningID, err)
	}
	var t Counts
	for i, v := range vals[1:] {
		s, _ := v.(string)
		n, _ := strconv.ParseInt(s, 10, 64)
		var c Counts
		c.set(counters[i%len(counters)], n)
		t.Add(c)
	}
	t.settle()
	return t, vals[0] != nil, nil
}

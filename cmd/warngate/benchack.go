package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"warngate/channels"
	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

// ackBench sizes the 叫应 bench.
type ackBench struct {
	redisURL string
	// warnings red warnings for single villages are issued over spread.
	warnings int
	spread   time.Duration
	// deadline and tries replace the red rule's ack_deadline and ack_tries.
	deadline time.Duration
	tries    int
	// cityWide issues a city-wide red warning first: its plan keeps the
	// plan workers busy, and its every official is chased too.
	cityWide bool
}

// benchAck measures how late 叫应 reminders and escalations come. With the
// red rule's deadline shortened, it issues red warnings for single villages
// spread over a few seconds, so that their instants fall on every fraction
// of a second, after a city-wide one. Nobody confirms: every official is
// reminded, then escalated. Each step's lateness is when it was taken minus
// when it was due (the official's previous try plus the interval between
// tries); each reminder's lateness at the provider is when the provider
// accepted it minus the same instant.
func benchAck(ctx context.Context, o ackBench, stdout, stderr io.Writer) error {
	g, err := startBenchGateway(ctx, benchGatewayOptions{redisURL: o.redisURL, perVillage: 5, policy: func(p *policy.Policy) {
		for i := range p.Rules {
			if slices.Contains(p.Rules[i].Levels, warning.Red) {
				p.Rules[i].AckDeadline, p.Rules[i].AckTries, p.Rules[i].Escalate = policy.Duration(o.deadline), o.tries, true
			}
		}
	}}, stderr)
	if err != nil {
		return err
	}
	defer g.stop()

	type key struct{ warning, person string }
	var mu sync.Mutex
	reminded := map[key][]time.Time{} // reminders accepted by the provider, in order
	g.a.sim.OnAccept(func(b *channels.Batch, at time.Time) {
		if b.Notice != channels.NoticeReminder {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, r := range b.Recipients {
			k := key{b.Warning.ID, r.ID}
			reminded[k] = append(reminded[k], at)
		}
	})

	tree := g.a.tree
	var villages []string
	tree.Walk(benchCity(tree), func(d *region.Division) bool {
		if d.Level == region.Village {
			villages = append(villages, d.Code)
		}
		return true
	})
	fmt.Fprintf(stdout, "ack: red 叫应 in %s, %d tries; %s%d village warnings over %s; nobody confirms; Redis %s\n",
		o.deadline, o.tries, map[bool]string{true: "a city-wide warning, then "}[o.cityWide], o.warnings, o.spread, o.redisURL)
	var ids []string
	if o.cityWide {
		id, err := g.post(benchCity(tree))
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	start := time.Now()
	for i := range o.warnings {
		time.Sleep(time.Until(start.Add(o.spread * time.Duration(i) / time.Duration(o.warnings))))
		id, err := g.post(villages[(i*97)%len(villages)])
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}

	// Done when nobody is waiting (nobody confirms: every official
	// escalated) and every escalation is logged: a check moves its
	// officials before it tells their superiors and logs the steps.
	limit := time.Now().Add(2*o.deadline + time.Minute)
	for _, id := range ids {
		for {
			p, err := g.a.ledger.Progress(ctx, id)
			if err != nil {
				return err
			}
			var waiting, expected int64
			for _, a := range p.Acks {
				waiting, expected = waiting+a.Waiting, expected+a.Expected
			}
			if !p.PlannedAt.IsZero() && expected > 0 && waiting == 0 {
				steps, err := g.a.ledger.Steps(ctx, id)
				if err != nil {
					return err
				}
				logged := map[string]bool{}
				for _, s := range steps {
					if s.Action != "remind" && !s.Due.IsZero() && s.PersonID != "" {
						logged[s.PersonID] = true
					}
				}
				if int64(len(logged)) >= expected { // nobody confirms here
					break
				}
			}
			if time.Now().After(limit) {
				return fmt.Errorf("bench: warning %s: %d of %d officials still waiting after %s", id, waiting, expected, time.Since(start).Round(time.Second))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	var taken, sent []time.Duration
	byKind := map[string][]time.Duration{} // city-wide, village: steps taken − due
	reminders, escalations := 0, 0
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		steps, err := g.a.ledger.Steps(ctx, id)
		if err != nil {
			return err
		}
		nth := map[string]int{}
		for _, s := range steps {
			if s.Due.IsZero() || s.PersonID == "" {
				continue
			}
			taken = append(taken, s.At.Sub(s.Due))
			kind := "village warnings"
			if o.cityWide && id == ids[0] {
				kind = "city-wide warning"
			}
			byKind[kind] = append(byKind[kind], s.At.Sub(s.Due))
			if s.Action != "remind" {
				escalations++
				continue
			}
			reminders++
			if at := reminded[key{id, s.PersonID}]; nth[s.PersonID] < len(at) {
				sent = append(sent, at[nth[s.PersonID]].Sub(s.Due))
				nth[s.PersonID]++
			}
		}
	}
	if len(taken) == 0 {
		return fmt.Errorf("bench: no 叫应 steps recorded")
	}
	slices.Sort(taken)
	slices.Sort(sent)
	early := 0
	for _, d := range taken {
		if d < 0 {
			early++
		}
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
	fmt.Fprintf(stdout, "  steps:                 %d reminders, %d escalations over %d warnings, %d early\n", reminders, escalations, len(ids), early)
	fmt.Fprintf(stdout, "  step taken − due:      p50 %s, p99 %s, max %s\n", ms(percentile(taken, 0.5)), ms(percentile(taken, 0.99)), ms(taken[len(taken)-1]))
	for _, kind := range []string{"city-wide warning", "village warnings"} {
		if l := byKind[kind]; len(l) > 0 {
			slices.Sort(l)
			fmt.Fprintf(stdout, "    %-19s p50 %s, p99 %s, max %s over %d steps\n", kind+":", ms(percentile(l, 0.5)), ms(percentile(l, 0.99)), ms(l[len(l)-1]), len(l))
		}
	}
	if len(sent) > 0 {
		fmt.Fprintf(stdout, "  reminder at provider:  p50 %s, p99 %s, max %s over %d reminders\n", ms(percentile(sent, 0.5)), ms(percentile(sent, 0.99)), ms(sent[len(sent)-1]), len(sent))
	}
	fmt.Fprintf(stdout, "ack_lateness_p99_ms=%d ack_lateness_max_ms=%d ack_sent_lateness_p99_ms=%d ack_early=%d\n",
		percentile(taken, 0.99).Milliseconds(), taken[len(taken)-1].Milliseconds(), percentile(sent, 0.99).Milliseconds(), early)
	return nil
}

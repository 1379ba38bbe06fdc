// Package policy decides who is told what, on which channels: rules map a
// warning's hazard and level to audiences, channels, acknowledgement
// deadlines and loudspeaker repeats, and Expand turns a warning into batches
// of recipients. It reads the division tree and the roster; it never sends
// anything and holds no state between calls.
package policy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"warngate/region"
	"warngate/warning"
)

// Rule says how warnings that match it are disseminated.
type Rule struct {
	Name string `yaml:"name"`
	// Levels and Hazards select the warnings the rule applies to; empty means any.
	Levels  []warning.Level  `yaml:"levels"`
	Hazards []warning.Hazard `yaml:"hazards"`
	// Send maps each audience to its channels, in the order they are tried
	// for acknowledgement.
	Send map[warning.Audience][]warning.Channel `yaml:"send"`
	// AckDeadline is how long an official has to confirm receipt.
	AckDeadline Duration `yaml:"ack_deadline"`
	// Escalate says whether an official who does not confirm is escalated
	// to a superior once the deadline passes.
	Escalate bool `yaml:"escalate"`
	// AckTries is how many times an official is asked before the deadline,
	// the first message included, spread evenly over it. Default 1.
	AckTries int `yaml:"ack_tries"`
	// CallListDeadline is how long grid workers have to reach every listed
	// household before the village officer is told who is left. Zero: never.
	CallListDeadline Duration `yaml:"calllist_deadline"`
	// FallbackAfter is how long after a warning is accepted a resident not
	// reached by any electronic channel is put on their village's call
	// list, for a grid worker to visit. Zero: no fallback visits.
	FallbackAfter Duration `yaml:"fallback_after"`
	// Repeat is how many times loudspeakers play the message. Zero means once.
	Repeat int `yaml:"repeat"`
	// HouseholdCategories limits call lists to these categories; empty means all.
	HouseholdCategories []region.HouseholdCategory `yaml:"household_categories"`
	// CallAfter is how long after the message the officials of the
	// audiences sent on the voice channel are called, those who have not
	// confirmed by then; zero calls them with the message. At night, when
	// voice is one of the night's louder channels, they are called with
	// the message whatever this says.
	CallAfter Duration `yaml:"call_after"`
	// CallTries is how many times an official is called in all, until
	// they confirm (by the call, the link or an SMS reply), the calls
	// spread evenly over CallWithin from the first. Default 1.
	CallTries int `yaml:"call_tries"`
	// CallWithin is the time the calls are spread over. Default
	// AckDeadline.
	CallWithin Duration `yaml:"call_within"`
}

// Calls reports whether the rule calls the officials of an audience.
func (r *Rule) Calls(a warning.Audience) bool { return slices.Contains(r.Send[a], warning.Voice) }

// CallTimes returns how many times the rule calls an official in all.
func (r *Rule) CallTimes() int { return max(1, r.CallTries) }

// CallInterval is the time between an official's calls: CallWithin (or
// AckDeadline) over CallTries.
func (r *Rule) CallInterval() time.Duration {
	within := r.CallWithin
	if within <= 0 {
		within = r.AckDeadline
	}
	return time.Duration(within) / time.Duration(r.CallTimes())
}

// Recalls reports whether the rule's calls are followed on their own
// schedule, after the message or again: then the ladder's reminders rotate
// over the other channels, and the calls come from the call schedule.
func (r *Rule) Recalls() bool { return r.CallAfter > 0 || r.CallTimes() > 1 }

// CallAfter returns how long after a message sent at the officials of a
// called audience are first called: the rule's call_after, or zero at
// night when voice is one of the night's louder channels.
func (p *Policy) CallAfter(r *Rule, at time.Time) time.Duration {
	if p.Night.IsNight(at) && slices.Contains(p.Night.Louder, warning.Voice) {
		return 0
	}
	return time.Duration(r.CallAfter)
}

// Night names the night hours (China Standard Time) and the channels that
// wake a person up, tried first for reminders at night.
type Night struct {
	From   string            `yaml:"from"` // "22:00"
	To     string            `yaml:"to"`   // "07:00"
	Louder []warning.Channel `yaml:"louder"`
}

// China Standard Time: no daylight saving, so a fixed zone needs no tzdata.
var cst = time.FixedZone("CST", 8*3600)

func clock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a time of day such as 22:00", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// IsNight reports whether t falls in the night hours.
func (n Night) IsNight(t time.Time) bool {
	from, err1 := clock(n.From)
	to, err2 := clock(n.To)
	if err1 != nil || err2 != nil || from == to {
		return false
	}
	lt := t.In(cst)
	m := lt.Hour()*60 + lt.Minute()
	if from < to {
		return m >= from && m < to
	}
	return m >= from || m < to
}

// Duration is a time.Duration written as "5m" in YAML.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 10m or 90s", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Matches reports whether the rule applies to the warning.
func (r *Rule) Matches(w *warning.Warning) bool {
	return (len(r.Levels) == 0 || slices.Contains(r.Levels, w.Level)) &&
		(len(r.Hazards) == 0 || slices.Contains(r.Hazards, w.Hazard))
}

// Policy is an ordered list of rules plus batch sizes; the first rule that
// matches a warning decides.
type Policy struct {
	Rules []Rule `yaml:"rules"`
	// Night is when reminders start with the louder channels.
	Night Night `yaml:"night"`
	// DrillAudiences are the only audiences an exercise (演练) reaches;
	// empty means every audience of the matching rule.
	DrillAudiences []warning.Audience `yaml:"drill_audiences"`
	// TestRecipients are the only people a test warning reaches (person ids).
	TestRecipients []string `yaml:"test_recipients"`
	// BatchSize is how many recipients one provider call carries per channel.
	BatchSize map[warning.Channel]int `yaml:"batch_size"`
}

//go:embed default.yaml
var defaultYAML []byte

// Default returns the built-in policy, the table in the README.
func Default() *Policy {
	p, err := Parse(bytes.NewReader(defaultYAML))
	if err != nil {
		panic("policy: built-in default.yaml: " + err.Error())
	}
	return p
}

// DefaultYAML returns the text of the built-in policy, to start a local copy from.
func DefaultYAML() []byte { return slices.Clone(defaultYAML) }

// Load reads a policy file.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	p, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// Parse decodes and validates a policy. Unknown keys are errors; every
// problem is reported at once.
func Parse(r io.Reader) (*Policy, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var p Policy
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Largest batch sizes the providers take in one call.
var maxBatch = map[warning.Channel]int{
	warning.SMS: 1000, warning.WeChat: 1000, warning.WeCom: 1000,
	warning.Broadcast: 500, warning.Screen: 500, warning.CallList: 1000,
	warning.Voice: 100, // one call each: a batch is what one worker dials in parallel
}

// Validate reports every problem with the policy, each saying what to fix.
func (p *Policy) Validate() error {
	var errs []error
	if len(p.Rules) == 0 {
		errs = append(errs, errors.New("policy: no rules: add at least one rule, or leave the policy file out to use the default"))
	}
	for i, r := range p.Rules {
		at := fmt.Sprintf("policy rule %d (%s)", i+1, r.Name)
		if r.Name == "" {
			errs = append(errs, fmt.Errorf("policy rule %d: name is required", i+1))
		}
		if len(r.Send) == 0 {
			errs = append(errs, fmt.Errorf("%s: send is empty: map at least one audience to channels", at))
		}
		for _, l := range r.Levels {
			if !l.Valid() {
				errs = append(errs, fmt.Errorf("%s: invalid level", at))
			}
		}
		for _, h := range r.Hazards {
			if _, err := warning.ParseHazard(string(h)); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", at, err))
			}
		}
		for _, a := range sortedAudiences(r.Send) {
			if _, err := warning.ParseAudience(string(a)); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", at, err))
				continue
			}
			for _, ch := range r.Send[a] {
				if _, err := warning.ParseChannel(string(ch)); err != nil {
					errs = append(errs, fmt.Errorf("%s: %s: %w", at, a, err))
				} else if !channelFits(a, ch) {
					errs = append(errs, fmt.Errorf("%s: %s cannot be reached on %s", at, a, ch))
				}
			}
		}
		if r.AckDeadline < 0 {
			errs = append(errs, fmt.Errorf("%s: ack_deadline must not be negative", at))
		}
		if r.FallbackAfter < 0 {
			errs = append(errs, fmt.Errorf("%s: fallback_after must not be negative", at))
		}
		if r.AckTries < 0 || r.AckTries > 10 {
			errs = append(errs, fmt.Errorf("%s: ack_tries %d: use 1 to 10", at, r.AckTries))
		}
		called := false
		for a := range r.Send {
			called = called || r.Calls(a)
		}
		if r.CallAfter < 0 {
			errs = append(errs, fmt.Errorf("%s: call_after must not be negative", at))
		}
		if r.CallWithin < 0 {
			errs = append(errs, fmt.Errorf("%s: call_within must not be negative", at))
		}
		if r.CallTries < 0 || r.CallTries > 10 {
			errs = append(errs, fmt.Errorf("%s: call_tries %d: use 1 to 10", at, r.CallTries))
		}
		if !called && (r.CallAfter != 0 || r.CallTries != 0 || r.CallWithin != 0) {
			errs = append(errs, fmt.Errorf("%s: call_after, call_tries and call_within need an audience sent on voice: add voice to an officials' channels, or remove them", at))
		}
		if called && r.Recalls() && r.AckDeadline <= 0 {
			errs = append(errs, fmt.Errorf("%s: call_after and call_tries need ack_deadline: calls are placed by the 叫应 checks", at))
		}
		if r.Repeat < 0 || r.Repeat > 10 {
			errs = append(errs, fmt.Errorf("%s: repeat %d: use 0 to 10 plays", at, r.Repeat))
		}
		for _, c := range r.HouseholdCategories {
			if _, err := region.ParseHouseholdCategory(string(c)); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", at, err))
			}
		}
	}
	if p.Night.From != "" || p.Night.To != "" {
		if _, err := clock(p.Night.From); err != nil {
			errs = append(errs, fmt.Errorf("policy night.from: %w", err))
		}
		if _, err := clock(p.Night.To); err != nil {
			errs = append(errs, fmt.Errorf("policy night.to: %w", err))
		}
	}
	for _, ch := range p.Night.Louder {
		if _, err := warning.ParseChannel(string(ch)); err != nil {
			errs = append(errs, fmt.Errorf("policy night.louder: %w", err))
		}
	}
	for _, a := range p.DrillAudiences {
		if _, err := warning.ParseAudience(string(a)); err != nil {
			errs = append(errs, fmt.Errorf("policy drill_audiences: %w", err))
		}
	}
	for ch, n := range p.BatchSize {
		if _, err := warning.ParseChannel(string(ch)); err != nil {
			errs = append(errs, fmt.Errorf("policy batch_size: %w", err))
		} else if n < 1 || n > maxBatch[ch] {
			errs = append(errs, fmt.Errorf("policy batch_size %s: %d: use 1 to %d", ch, n, maxBatch[ch]))
		}
	}
	return errors.Join(errs...)
}

// channelFits says which channels can carry a message to an audience:
// devices have no phone, and people are not loudspeakers. Phone calls are
// for the officials who must confirm.
func channelFits(a warning.Audience, ch warning.Channel) bool {
	if ch == warning.Voice {
		return a.Official()
	}
	switch a {
	case warning.Loudspeakers:
		return ch == warning.Broadcast
	case warning.Screens:
		return ch == warning.Screen
	case warning.Households:
		return ch == warning.CallList || ch == warning.SMS
	}
	return ch == warning.SMS || ch == warning.WeChat || ch == warning.WeCom
}

// Rule returns the first rule matching the warning, or nil.
func (p *Policy) Rule(w *warning.Warning) *Rule {
	for i := range p.Rules {
		if p.Rules[i].Matches(w) {
			return &p.Rules[i]
		}
	}
	return nil
}

// Tries returns how many times the rule asks an official to confirm.
func (r *Rule) Tries() int { return max(1, r.AckTries) }

// ReminderChannels returns the channels to ask an official of an audience
// on, in order: the rule's channels, with the louder ones first at night.
//
// When the rule calls on its own schedule (Recalls), voice is left out:
// the calls come from that schedule, unless voice is the audience's only
// channel.
func (p *Policy) ReminderChannels(r *Rule, a warning.Audience, at time.Time) []warning.Channel {
	chs := slices.Clone(r.Send[a])
	if r.Recalls() && len(chs) > 1 {
		chs = slices.DeleteFunc(chs, func(ch warning.Channel) bool { return ch == warning.Voice })
	}
	if !p.Night.IsNight(at) {
		return chs
	}
	slices.SortStableFunc(chs, func(x, y warning.Channel) int {
		lx, ly := slices.Contains(p.Night.Louder, x), slices.Contains(p.Night.Louder, y)
		switch {
		case lx && !ly:
			return -1
		case ly && !lx:
			return 1
		}
		return 0
	})
	return chs
}

// Batch returns the batch size of a channel.
func (p *Policy) Batch(ch warning.Channel) int {
	if n := p.BatchSize[ch]; n > 0 {
		return n
	}
	return maxBatch[ch]
}

func sortedAudiences(m map[warning.Audience][]warning.Channel) []warning.Audience {
	out := make([]warning.Audience, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b warning.Audience) int { return strings.Compare(string(a), string(b)) })
	return out
}

package policy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

func redWuhua(level warning.Level, areas ...string) *warning.Warning {
	return &warning.Warning{ID: "w", Hazard: warning.Rainstorm, Level: level, Status: warning.StatusActual, Areas: areas, Headline: "x", Expires: time.Now().Add(time.Hour)}
}

func TestDefaultPolicyTable(t *testing.T) {
	p := policy.Default()
	tests := []struct {
		level    warning.Level
		deadline time.Duration
		resident []warning.Channel
		escalate bool
	}{
		{warning.Blue, 30 * time.Minute, []warning.Channel{warning.WeChat}, false},
		{warning.Yellow, 20 * time.Minute, []warning.Channel{warning.WeChat}, false},
		{warning.Orange, 10 * time.Minute, []warning.Channel{warning.SMS, warning.WeChat}, true},
		{warning.Red, 5 * time.Minute, []warning.Channel{warning.SMS, warning.WeChat}, true},
	}
	for _, tt := range tests {
		t.Run(tt.level.String(), func(t *testing.T) {
			r := p.Rule(redWuhua(tt.level, "530102000000"))
			if r == nil {
				t.Fatal("no rule")
			}
			if time.Duration(r.AckDeadline) != tt.deadline || r.Escalate != tt.escalate {
				t.Errorf("deadline %v escalate %v", time.Duration(r.AckDeadline), r.Escalate)
			}
			if got := r.Send[warning.Residents]; strings.Join(chs(got), ",") != strings.Join(chs(tt.resident), ",") {
				t.Errorf("residents on %v, want %v", got, tt.resident)
			}
		})
	}
}

func chs(c []warning.Channel) []string {
	out := make([]string, len(c))
	for i, x := range c {
		out[i] = string(x)
	}
	return out
}

func TestExpandWuhuaRed(t *testing.T) {
	tree := region.Kunming()
	opt := region.DemoOptions{ResidentsPerVillage: 10, WeChatShare: 0.5, HouseholdsPerVillage: 4, GridWorkersPerVillage: 2}
	roster := region.Demo(tree, opt)
	p := policy.Default()
	p.BatchSize[warning.SMS] = 100

	var batches []policy.Batch
	seen := map[string]bool{}
	sum, err := p.Expand(redWuhua(warning.Red, "530102000000", "530102001000"), tree, roster, func(b policy.Batch) error {
		if len(b.Recipients) > p.Batch(b.Channel) {
			t.Errorf("batch of %d on %s exceeds %d", len(b.Recipients), b.Channel, p.Batch(b.Channel))
		}
		for _, r := range b.Recipients {
			k := string(b.Channel) + "/" + r.ID
			if seen[k] {
				t.Errorf("%s planned twice", k)
			}
			seen[k] = true
			if r.Audience != b.Audience {
				t.Errorf("recipient %s of audience %s in a %s batch", r.ID, r.Audience, b.Audience)
			}
		}
		batches = append(batches, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c := roster.Counts("530102000000")
	count := func(ch warning.Channel, aud warning.Audience) int64 {
		var n int64
		for g, v := range sum.Planned {
			if g.Channel == ch && g.Audience == aud {
				n += v
			}
		}
		return n
	}
	officials := count(warning.WeCom, warning.CountyOfficials) + count(warning.WeCom, warning.TownshipOfficials) + count(warning.WeCom, warning.VillageOfficials)
	if officials != int64(c.Officials) {
		t.Errorf("officials on wecom: %d, roster has %d", officials, c.Officials)
	}
	if got := count(warning.SMS, warning.Residents); got != int64(c.Residents) || got != 101*10 {
		t.Errorf("residents on sms: %d, want %d", got, c.Residents)
	}
	if got := count(warning.WeChat, warning.Residents); got != int64(c.WeChatFollowers) {
		t.Errorf("residents on wechat: %d, want %d followers", got, c.WeChatFollowers)
	}
	if got := sum.NoAddress[warning.WeChat][warning.Residents]; got != int64(c.Residents-c.WeChatFollowers) {
		t.Errorf("residents without openid: %d", got)
	}
	// Every resident has a phone: none is out of every channel's reach.
	if got := sum.Unreachable[warning.Residents]; got != 0 {
		t.Errorf("residents unreachable on every channel: %d, want 0 (all have phones)", got)
	}
	if got := count(warning.Broadcast, warning.Loudspeakers); got != 101 {
		t.Errorf("loudspeakers %d, want 101", got)
	}
	if got := count(warning.Screen, warning.Screens); got != 101 {
		t.Errorf("screens %d, want 101", got)
	}
	if got := count(warning.CallList, warning.Households); got != int64(c.Households) {
		t.Errorf("households %d, want %d", got, c.Households)
	}
	// Officials are emitted before anyone else.
	if batches[0].Audience.Official() == false {
		t.Errorf("first batch is for %s, want officials", batches[0].Audience)
	}
	if sum.Batches != len(batches) {
		t.Errorf("summary says %d batches, emitted %d", sum.Batches, len(batches))
	}
}

// A resident with no address on any of the rule's channels for residents
// is counted as unreachable, once, however many channels they lack.
func TestExpandCountsResidentsNoChannelReaches(t *testing.T) {
	tree := region.Kunming()
	roster := region.Demo(tree, region.DemoOptions{ResidentsPerVillage: 10, WeChatShare: 0.5})
	p := policy.Default()
	for i := range p.Rules {
		p.Rules[i].Send[warning.Residents] = []warning.Channel{warning.WeChat, warning.WeCom}
	}
	sum, err := p.Expand(redWuhua(warning.Red, "530102001001"), tree, roster, func(policy.Batch) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	c := roster.Counts("530102001001")
	if c.WeChatFollowers == 0 || c.WeChatFollowers == c.Residents {
		t.Fatalf("demo village: %d of %d residents follow on WeChat; the test needs some who do not", c.WeChatFollowers, c.Residents)
	}
	// Residents have no WeCom: those without WeChat have nothing.
	if got, want := sum.Unreachable[warning.Residents], int64(c.Residents-c.WeChatFollowers); got != want {
		t.Errorf("unreachable residents %d, want %d (no WeChat, no WeCom)", got, want)
	}
	if got := sum.NoAddress[warning.WeCom][warning.Residents]; got != int64(c.Residents) {
		t.Errorf("residents without WeCom %d, want all %d", got, c.Residents)
	}
	// A drill for officials only reaches no resident, and counts none.
	p.DrillAudiences = []warning.Audience{warning.TownshipOfficials, warning.VillageOfficials}
	drill := redWuhua(warning.Red, "530102001001")
	drill.Status = warning.StatusExercise
	sum, err = p.Expand(drill, tree, roster, func(policy.Batch) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got := sum.Unreachable[warning.Residents]; got != 0 {
		t.Errorf("a drill for officials: %d residents unreachable, want 0", got)
	}
}

func TestExpandVillageTellsOfficialsAbove(t *testing.T) {
	tree := region.Kunming()
	roster := region.Demo(tree, region.DemoOptions{ResidentsPerVillage: 3})
	village := ""
	tree.Walk("530102001000", func(d *region.Division) bool {
		if d.Level == region.Village {
			village = d.Code
			return false
		}
		return true
	})
	sum, err := policy.Default().Expand(redWuhua(warning.Blue, village), tree, roster, func(policy.Batch) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	got := map[warning.Audience]int64{}
	for g, n := range sum.Planned {
		if g.Channel == warning.WeCom {
			got[g.Audience] += n
		}
	}
	if got[warning.CountyOfficials] != 2 || got[warning.TownshipOfficials] != 2 || got[warning.VillageOfficials] == 0 {
		t.Errorf("officials told for a village warning: %v", got)
	}
	for g := range sum.Planned {
		if g.Channel == warning.SMS && g.Audience == warning.Residents {
			t.Errorf("blue warning sent residents an SMS")
		}
	}
}

func TestExpandUnknownArea(t *testing.T) {
	_, err := policy.Default().Expand(redWuhua(warning.Red, "530102000000", "110101000000"), region.Kunming(), region.Demo(region.Kunming(), region.DemoOptions{}), func(policy.Batch) error { return nil })
	var fe *warning.FieldError
	if !errors.As(err, &fe) || fe.Field != "areas[1]" {
		t.Fatalf("err = %v, want a field error on areas[1]", err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "rules: []\nfoo: 1\n", "field foo not found"},
		{"no rules", "rules: []\n", "policy: no rules: add at least one rule"},
		{"bad channel", "rules:\n- name: r\n  send: {residents: [sirens]}\n", `policy rule 1 (r): residents: unknown channel "sirens"`},
		{"device on sms", "rules:\n- name: r\n  send: {screens: [sms]}\n", "policy rule 1 (r): screens cannot be reached on sms"},
		{"residents on voice", "rules:\n- name: r\n  send: {residents: [voice]}\n", "policy rule 1 (r): residents cannot be reached on voice"},
		{"bad level", "rules:\n- name: r\n  levels: [purple]\n  send: {residents: [sms]}\n", `unknown level "purple"`},
		{"bad duration", "rules:\n- name: r\n  ack_deadline: soon\n  send: {residents: [sms]}\n", `"soon" is not a duration`},
		{"batch too big", "rules:\n- name: r\n  send: {residents: [sms]}\nbatch_size: {sms: 5000}\n", "policy batch_size sms: 5000: use 1 to 1000"},
		{"all at once", "rules:\n- send: {residents: [fax]}\n  repeat: 99\n", "name is required"},
		{"calls without voice", "rules:\n- name: r\n  ack_deadline: 5m\n  call_tries: 3\n  send: {township_officials: [sms]}\n",
			"policy rule 1 (r): call_after, call_tries and call_within need an audience sent on voice"},
		{"call_after in seconds, negative", "rules:\n- name: r\n  ack_deadline: 5m\n  call_after: -90s\n  send: {township_officials: [voice]}\n",
			"policy rule 1 (r): call_after must not be negative"},
		{"too many calls", "rules:\n- name: r\n  ack_deadline: 5m\n  call_tries: 11\n  send: {township_officials: [voice]}\n",
			"policy rule 1 (r): call_tries 11: use 1 to 10"},
		{"re-calls without a deadline", "rules:\n- name: r\n  call_tries: 3\n  send: {township_officials: [voice]}\n",
			"policy rule 1 (r): call_after and call_tries need ack_deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.Parse(strings.NewReader(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	_, err := policy.Parse(strings.NewReader("rules:\n- send: {residents: [fax]}\n  repeat: 99\n"))
	if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
		t.Errorf("want 3 problems reported at once, got %d: %v", n, err)
	}
}

func TestVoiceCallsOfficialsOnTheirPhones(t *testing.T) {
	tree := region.Kunming()
	roster := region.Demo(tree, region.DemoOptions{ResidentsPerVillage: 1})
	p, err := policy.Parse(strings.NewReader("rules:\n- name: r\n  send: {township_officials: [voice]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var called int
	_, err = p.Expand(redWuhua(warning.Red, "530102000000"), tree, roster, func(b policy.Batch) error {
		if b.Channel != warning.Voice || len(b.Recipients) > p.Batch(warning.Voice) {
			t.Errorf("batch on %s of %d", b.Channel, len(b.Recipients))
		}
		for _, r := range b.Recipients {
			if pr, ok := roster.Person(r.ID); !ok || r.Address != pr.Phone || r.Address == "" {
				t.Errorf("%s called at %q", r.ID, r.Address)
			}
			called++
		}
		return nil
	})
	if err != nil || called == 0 {
		t.Fatalf("called %d, err %v", called, err)
	}
}

// The shipped policy calls township leaders and duty officers: red with the
// message and three times in five minutes, orange ten minutes after it (by
// night with it); call_after takes seconds as ack_deadline does. Text
// reminders then rotate over the other channels.
func TestDefaultPolicyCalls(t *testing.T) {
	p := policy.Default()
	day := time.Date(2026, 7, 1, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))
	night := time.Date(2026, 7, 1, 23, 30, 0, 0, time.FixedZone("CST", 8*3600))
	red, orange := p.Rule(redWuhua(warning.Red, "530102000000")), p.Rule(redWuhua(warning.Orange, "530102000000"))
	for _, c := range []struct {
		rule             *policy.Rule
		after, interval  time.Duration
		tries            int
		nightAfter       time.Duration
		calledAudience   warning.Audience
		uncalledAudience warning.Audience
	}{
		{red, 0, 100 * time.Second, 3, 0, warning.TownshipOfficials, warning.VillageOfficials},
		{orange, 10 * time.Minute, 10 * time.Minute, 1, 0, warning.TownshipOfficials, warning.CountyOfficials},
	} {
		r := c.rule
		if !r.Calls(c.calledAudience) || r.Calls(c.uncalledAudience) {
			t.Errorf("%s calls %s: %v, %s: %v", r.Name, c.calledAudience, r.Calls(c.calledAudience), c.uncalledAudience, r.Calls(c.uncalledAudience))
		}
		if got := p.CallAfter(r, day); got != c.after {
			t.Errorf("%s by day calls %s after the message, want %s", r.Name, got, c.after)
		}
		if got := p.CallAfter(r, night); got != c.nightAfter {
			t.Errorf("%s at night calls %s after the message, want %s", r.Name, got, c.nightAfter)
		}
		if r.CallTimes() != c.tries || r.CallInterval() != c.interval {
			t.Errorf("%s calls %d times, %s apart; want %d, %s", r.Name, r.CallTimes(), r.CallInterval(), c.tries, c.interval)
		}
		if got := p.ReminderChannels(r, c.calledAudience, day); slices.Contains(got, warning.Voice) || len(got) != 2 {
			t.Errorf("%s reminds on %v: the calls have their own schedule", r.Name, got)
		}
	}
	sec, err := policy.Parse(strings.NewReader("rules:\n- name: r\n  ack_deadline: 300s\n  call_after: 90s\n  send: {township_officials: [sms, voice]}\n"))
	if err != nil || sec.Rules[0].CallAfter.Std() != 90*time.Second {
		t.Errorf("call_after: 90s read as %v, %v", sec, err)
	}
}

func TestSuperiorChain(t *testing.T) {
	tree := region.Kunming()
	roster := region.Demo(tree, region.DemoOptions{ResidentsPerVillage: 1})
	var village region.Person
	tree.Walk("530102001000", func(d *region.Division) bool {
		if d.Level != region.Village {
			return true
		}
		roster.People(d.Code, func(p region.Person) bool {
			if p.Role == region.VillageOfficer {
				village = p
				return false
			}
			return true
		})
		return false
	})
	want := []region.Role{region.TownshipDuty, region.TownshipLeader, region.CountyDuty, region.CountyLeader}
	p := village
	for _, role := range want {
		next, ok := policy.Superior(tree, roster, p)
		if !ok || next.Role != role {
			t.Fatalf("superior of %s (%s) = %+v, %v; want a %s", p.Name, p.Role, next, ok, role)
		}
		p = next
	}
	if _, ok := policy.Superior(tree, roster, p); ok {
		t.Fatal("the county leader has a superior")
	}
}

func TestNightReordersReminders(t *testing.T) {
	p := policy.Default()
	r := p.Rule(redWuhua(warning.Red, "530102000000"))
	night := time.Date(2026, 7, 1, 23, 30, 0, 0, time.FixedZone("CST", 8*3600))
	day := time.Date(2026, 7, 1, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))
	if got := p.ReminderChannels(r, warning.VillageOfficials, day); got[0] != warning.WeCom {
		t.Errorf("by day reminders start on %s, want wecom", got[0])
	}
	if got := p.ReminderChannels(r, warning.VillageOfficials, night); got[0] != warning.SMS {
		t.Errorf("at night reminders start on %s, want sms", got[0])
	}
}

// The province above the city, and codes the tree does not have, are
// outside the jurisdiction; each is named with its index.
func TestCheckAreasJurisdiction(t *testing.T) {
	tree := region.Kunming()
	err := policy.CheckAreas(tree, []string{"530102000000", "530000000000", "530181999999", "530100000000"})
	if err == nil {
		t.Fatal("province and unknown code accepted")
	}
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *warning.FieldError
		if errors.As(e, &fe) {
			fields = append(fields, fe.Error())
		}
	}
	want := []string{
		"areas[1]: 530000000000 is 云南省, the province: outside 昆明市 (530100000000), which this gateway warns; name the city or its counties, townships and villages",
		"areas[2]: 530181999999 is not a division of 昆明市 (530100000000), which this gateway warns; give the 12-digit code of a division in it",
	}
	if strings.Join(fields, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(fields, "\n"), strings.Join(want, "\n"))
	}
	if err := policy.CheckAreas(tree, []string{"530100000000", "530102000000", "530102000000"}); err != nil {
		t.Errorf("the city and a county named twice: %v", err)
	}
}

func TestFallbackAfter(t *testing.T) {
	p := policy.Default()
	for _, tt := range []struct {
		level warning.Level
		want  time.Duration
	}{{warning.Red, 10 * time.Minute}, {warning.Orange, 20 * time.Minute}, {warning.Yellow, 0}, {warning.Blue, 0}} {
		if got := p.Rule(redWuhua(tt.level, "530102000000")).FallbackAfter.Std(); got != tt.want {
			t.Errorf("%s: fallback_after %v, want %v", tt.level, got, tt.want)
		}
	}
	q, err := policy.Parse(strings.NewReader("rules:\n- name: r\n  fallback_after: 90s\n  send: {residents: [sms]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := q.Rules[0].FallbackAfter.Std(); got != 90*time.Second {
		t.Errorf("fallback_after 90s read as %v", got)
	}
	_, err = policy.Parse(strings.NewReader("rules:\n- name: r\n  fallback_after: -1m\n  send: {residents: [sms]}\n"))
	if err == nil || !strings.Contains(err.Error(), "policy rule 1 (r): fallback_after must not be negative") {
		t.Errorf("negative fallback_after: err = %v", err)
	}
}

// A plan gives each recipient a ledger bucket: the same on every channel
// (a script recording one channel's delivery looks for the others
// there), the same when the warning is expanded again (a resend), from
// the directory the summary carries, and small enough for Redis to keep
// packed.
func TestExpandGivesEachRecipientItsBucket(t *testing.T) {
	tree := region.Kunming()
	roster := region.Demo(tree, region.DemoOptions{ResidentsPerVillage: 300, WeChatShare: 0.5, HouseholdsPerVillage: 4})
	w := redWuhua(warning.Red, "530102000000")
	expand := func() (map[string]string, map[string]int, *policy.Summary) {
		byID := map[string]string{} // id → bucket
		sizes := map[string]int{}   // channel + bucket → recipients
		sum, err := policy.Default().Expand(w, tree, roster, func(b policy.Batch) error {
			for _, r := range b.Recipients {
				if r.Bucket == "" {
					t.Fatalf("%s on %s has no bucket", r.ID, b.Channel)
				}
				if prev, ok := byID[r.ID]; ok && prev != r.Bucket {
					t.Fatalf("%s in bucket %s on %s and %s on another channel", r.ID, r.Bucket, b.Channel, prev)
				}
				byID[r.ID] = r.Bucket
				sizes[string(b.Channel)+"|"+r.Bucket]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return byID, sizes, sum
	}
	first, sizes, sum := expand()
	for id, b := range first {
		g, _, _ := strings.Cut(b, ".")
		m, ok := sum.Buckets[g]
		if !ok {
			t.Fatalf("%s: group %s not in the directory %v", id, g, sum.Buckets)
		}
		if warning.Bucket(g, id, m) != b {
			t.Fatalf("%s: bucket %s, the directory gives %s", id, b, warning.Bucket(g, id, m))
		}
	}
	var biggest int
	for k, n := range sizes {
		if n > 128 {
			t.Errorf("bucket %s holds %d recipients: Redis no longer packs it", k, n)
		}
		biggest = max(biggest, n)
	}
	if biggest < warning.BucketTarget/2 {
		t.Errorf("the largest bucket holds %d: villages of 300 are spread too thin", biggest)
	}
	again, _, _ := expand()
	for id, b := range first {
		if again[id] != b {
			t.Fatalf("%s: bucket %s, then %s when expanded again", id, b, again[id])
		}
	}
}

package warning

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Channel is a way of reaching people or devices.
type Channel string

// The channels warngate delivers on.
const (
	SMS       Channel = "sms"       // text messages through an SMS gateway
	WeChat    Channel = "wechat"    // official-account template messages to residents
	WeCom     Channel = "wecom"     // 企业微信 application messages to officials
	Broadcast Channel = "broadcast" // emergency-broadcast loudspeakers
	Screen    Channel = "screen"    // outdoor LED screens
	CallList  Channel = "calllist"  // grid workers reaching households door to door
	Voice     Channel = "voice"     // phone calls to officials, confirmed by a key press (电话叫应)
)

// Channels lists every channel in the order progress reports them.
var Channels = []Channel{WeCom, SMS, WeChat, Broadcast, Screen, CallList, Voice}

// ParseChannel checks a channel name.
func ParseChannel(s string) (Channel, error) {
	for _, c := range Channels {
		if string(c) == s {
			return c, nil
		}
	}
	return "", fmt.Errorf("unknown channel %q: use one of wecom, sms, wechat, broadcast, screen, calllist, voice", s)
}

// Chinese returns the channel's name as operators read it.
func (c Channel) Chinese() string {
	switch c {
	case SMS:
		return "短信"
	case WeChat:
		return "微信公众号"
	case WeCom:
		return "企业微信"
	case Broadcast:
		return "应急广播"
	case Screen:
		return "户外显示屏"
	case CallList:
		return "人工传递"
	case Voice:
		return "电话"
	}
	return string(c)
}

// Audience is a group of recipients that policy treats alike.
type Audience string

// Audiences, from the officials who must answer to the households reached by hand.
const (
	CountyOfficials   Audience = "county_officials"
	TownshipOfficials Audience = "township_officials"
	VillageOfficials  Audience = "village_officials"
	Residents         Audience = "residents"
	Loudspeakers      Audience = "loudspeakers"
	Screens           Audience = "screens"
	Households        Audience = "households"
)

// Audiences lists every audience, officials first.
var Audiences = []Audience{CountyOfficials, TownshipOfficials, VillageOfficials, Residents, Loudspeakers, Screens, Households}

// ParseAudience checks an audience name.
func ParseAudience(s string) (Audience, error) {
	for _, a := range Audiences {
		if string(a) == s {
			return a, nil
		}
	}
	names := make([]string, len(Audiences))
	for i, a := range Audiences {
		names[i] = string(a)
	}
	return "", fmt.Errorf("unknown audience %q: use one of %s", s, strings.Join(names, ", "))
}

// Official reports whether the audience is made of responsible persons who
// must confirm receipt.
func (a Audience) Official() bool {
	return a == CountyOfficials || a == TownshipOfficials || a == VillageOfficials
}

// Code is the one-byte form of an audience stored with every delivery.
func (a Audience) Code() byte {
	for i, x := range Audiences {
		if x == a {
			return byte('a' + i)
		}
	}
	return '?'
}

// AudienceFromCode inverts Audience.Code.
func AudienceFromCode(b byte) (Audience, bool) {
	i := int(b) - 'a'
	if i < 0 || i >= len(Audiences) {
		return "", false
	}
	return Audiences[i], true
}

// Recipient is one addressee of a warning on one channel: a person, a device
// or a household.
type Recipient struct {
	ID       string   `json:"id"`
	Address  string   `json:"addr"` // phone, openid, WeCom user id, device platform id, or the grid worker's id
	Audience Audience `json:"aud"`
	Division string   `json:"div"` // the most specific 12-digit division code known
	Name     string   `json:"name,omitempty"`
	// Bucket is where the ledger keeps the recipient's deliveries of a
	// warning (see Bucket); empty in plans made before buckets.
	Bucket string `json:"bkt,omitempty"`
}

// DeliveryState is where one delivery (warning, recipient, channel) stands.
// Its values are single bytes because the ledger stores one per recipient.
type DeliveryState byte

// Delivery states. A delivery with no state recorded is queued. Delivered,
// Failed and Expired are final: a later report does not change them.
const (
	Queued    DeliveryState = 'Q'
	Sent      DeliveryState = 'S' // the provider accepted it
	Delivered DeliveryState = 'D' // the provider reported it delivered (or played, or reached)
	Failed    DeliveryState = 'F'
	Expired   DeliveryState = 'X' // the warning expired or was cancelled before it was sent
)

// Final reports whether no later report may change the state.
func (s DeliveryState) Final() bool { return s == Delivered || s == Failed || s == Expired }

// String returns the state's API name.
func (s DeliveryState) String() string {
	switch s {
	case Queued:
		return "queued"
	case Sent:
		return "sent"
	case Delivered:
		return "delivered"
	case Failed:
		return "failed"
	case Expired:
		return "expired"
	}
	return fmt.Sprintf("state(%q)", byte(s))
}

// Ref names one delivery. Its string form
// "<warning>/<channel>/<bucket>/<recipient>" travels to providers (in a
// dlr-url, an out id, a callback) and comes back with their reports, so a
// report finds its delivery without a lookup. A ref of a plan made before
// buckets has no bucket and reads "<warning>/<channel>/<recipient>".
type Ref struct {
	WarningID   string
	Channel     Channel
	RecipientID string
	// Bucket is the recipient's bucket in the ledger (Recipient.Bucket).
	Bucket string
}

// RefTo names the delivery of a warning to a recipient on a channel.
func RefTo(warningID string, ch Channel, r Recipient) Ref {
	return Ref{WarningID: warningID, Channel: ch, RecipientID: r.ID, Bucket: r.Bucket}
}

func (r Ref) String() string {
	if r.Bucket == "" {
		return r.WarningID + "/" + string(r.Channel) + "/" + r.RecipientID
	}
	return r.WarningID + "/" + string(r.Channel) + "/" + r.Bucket + "/" + r.RecipientID
}

// ParseRef parses the string form of a Ref.
func ParseRef(s string) (Ref, error) {
	// Every provider report names its delivery so: cut in place, without
	// a slice of parts per report.
	n := strings.Count(s, "/") + 1
	if n < 3 || n > 4 {
		return Ref{}, badRef(s)
	}
	var parts [4]string
	rest := s
	for i := range n - 1 {
		parts[i], rest, _ = strings.Cut(rest, "/")
	}
	parts[n-1] = rest
	if parts[0] == "" || parts[n-1] == "" || (n == 4 && parts[2] == "") {
		return Ref{}, badRef(s)
	}
	ch, err := ParseChannel(parts[1])
	if err != nil {
		return Ref{}, fmt.Errorf("delivery ref %q: %w", s, err)
	}
	r := Ref{WarningID: parts[0], Channel: ch, RecipientID: parts[n-1]}
	if n == 4 {
		r.Bucket = parts[2]
	}
	return r, nil
}

func badRef(s string) error {
	return fmt.Errorf("delivery ref %q: want <warning>/<channel>/<bucket>/<recipient>", s)
}

// BucketTarget is how many recipients of one kind in one division a
// delivery bucket of a new plan holds on average: few enough that Redis
// keeps the bucket packed (a listpack holds at most 128 fields), so that a
// delivery costs its id and value and little more; and, as Redis finds a
// field in a listpack by reading it from the start, few enough that a
// report's reads and writes of its bucket stay short, while each bucket
// costs a key. A plan records the target it used with its roster version
// (ledger.PinPlan): a plan run again and a resend lay the warning out as
// the first run did, whatever this version's target.
const BucketTarget = 40

// LegacyBucketTarget is the target of warnings planned before plans
// recorded theirs.
const LegacyBucketTarget = 80

// BucketKind is the letter that keeps the buckets of people, devices and
// households apart: they share channels (households and people get SMS).
func BucketKind(a Audience) byte {
	switch a {
	case Households:
		return 'h'
	case Loudspeakers, Screens:
		return 'd'
	}
	return 'p'
}

// BucketsFor is how many buckets n recipients of one kind in one division
// are spread over, about target to a bucket.
func BucketsFor(n, target int) int {
	if target < 1 {
		target = BucketTarget
	}
	return max(1, (n+target-1)/target)
}

// Bucket names the ledger bucket of recipient id: its kind and division
// (the group's key in a plan's bucket directory, "<kind><division>") and
// a hash of the id modulo the m buckets of that group. A recipient is in
// the same bucket on every channel of a warning, so that a script that
// records one channel's delivery finds the others.
func Bucket(group, id string, m int) string {
	return BucketName(group, BucketIndex(id, m))
}

// BucketIndex is which of a group's m buckets recipient id is in (Bucket).
func BucketIndex(id string, m int) int {
	if m <= 1 {
		return 0
	}
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return int(h % uint32(m))
}

// BucketName names bucket i of a group.
func BucketName(group string, i int) string { return group + "." + strconv.Itoa(i) }

// BucketGroup is the key of a recipient's division and kind in a plan's
// bucket directory.
func BucketGroup(a Audience, division string) string {
	return string([]byte{BucketKind(a)}) + division
}

// Report is what a provider says happened to one delivery.
type Report struct {
	Ref        Ref
	State      DeliveryState // Delivered or Failed
	Reason     string        // why it failed, in the provider's words; empty otherwise
	ProviderID string        // the provider's message id, when it gives one
	At         time.Time     // when it happened, by the provider's clock when known
	// Call is how a phone call ended, on the reports of the voice channel
	// (one report per call); nil on every other channel.
	Call *Call
}

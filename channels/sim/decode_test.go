package sim

import (
	"strings"
	"testing"

	"warngate/warning"
)

// A report line has five fields, or ten for a call; any other count is
// refused with the line's number and what a line holds.
func TestDecodeReportsCountsFields(t *testing.T) {
	ok := "w1/sms/b0/r1\tdelivered\tm1\t1700000000000\t\n" +
		"w1/sms/b0/r2\tfailed\tm2\t1700000000001\tMK:0001\n" +
		"w1/voice/b0/p1\tdelivered\tc1\t1700000000002\t\tanswered\t1\t3000\t20000\t1\n"
	reps, _, err := decodeReports([]byte(ok))
	if err != nil || len(reps) != 3 {
		t.Fatalf("decoded %d reports, %v; want 3", len(reps), err)
	}
	if reps[1].State != warning.Failed || reps[1].Reason != "MK:0001" || reps[1].Ref.RecipientID != "r2" || reps[1].At.UnixMilli() != 1700000000001 {
		t.Errorf("failed report decoded as %+v", reps[1])
	}
	if reps[2].Call == nil || reps[0].Call != nil {
		t.Errorf("call fields: %+v, %+v", reps[0].Call, reps[2].Call)
	}
	for _, bad := range []string{
		"w1/sms/b0/r1\tdelivered\tm1\t1700000000000",
		"w1/sms/b0/r1\tdelivered\tm1\t1700000000000\t\tx",
		"w1/voice/b0/p1\tdelivered\tc1\t1700000000002\t\tanswered\t1\t3000\t20000\t1\textra",
		"w1/voice/b0/p1\tdelivered\tc1\t1700000000002\t\tanswered\t1\t3000\t20000\t1\t\t\t",
	} {
		_, _, err := decodeReports([]byte("w1/sms/b0/r0\tdelivered\tm0\t1700000000000\t\n" + bad + "\n"))
		if err == nil || !strings.Contains(err.Error(), "line 2: want 5 tab-separated fields") {
			t.Errorf("%q: %v; want line 2 refused for its fields", bad, err)
		}
	}
}

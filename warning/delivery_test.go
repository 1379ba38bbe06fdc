package warning

import "testing"

// A ref carries its bucket to the provider and back; a ref of a plan made
// before buckets still reads.
func TestRefCarriesItsBucket(t *testing.T) {
	r := RefTo("w1", SMS, Recipient{ID: "r-7", Bucket: Bucket(BucketGroup(Residents, "530102001001"), "r-7", 9)})
	s := r.String()
	got, err := ParseRef(s)
	if err != nil || got != r || got.Bucket == "" {
		t.Fatalf("ParseRef(%q) = %+v, %v; want %+v", s, got, err, r)
	}
	old, err := ParseRef("w1/sms/r-7")
	if err != nil || old != (Ref{WarningID: "w1", Channel: SMS, RecipientID: "r-7"}) {
		t.Fatalf("an unbucketed ref parsed as %+v, %v", old, err)
	}
	for _, bad := range []string{"w1/sms", "w1/sms//r-7", "w1/sms/b/r-7/x", "/sms/r-7", "w1/sms/b/", "w1/fax/b/r"} {
		if _, err := ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) accepted", bad)
		}
	}
	for _, target := range []int{BucketTarget, LegacyBucketTarget} {
		if BucketsFor(0, target) != 1 || BucketsFor(target, target) != 1 || BucketsFor(target+1, target) != 2 {
			t.Errorf("BucketsFor, target %d: %d %d %d", target, BucketsFor(0, target), BucketsFor(target, target), BucketsFor(target+1, target))
		}
	}
	if BucketsFor(1000, 0) != BucketsFor(1000, BucketTarget) {
		t.Errorf("BucketsFor with no target: %d buckets, want this version's %d", BucketsFor(1000, 0), BucketsFor(1000, BucketTarget))
	}
}

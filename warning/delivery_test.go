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
	if BucketsFor(0) != 1 || BucketsFor(BucketTarget) != 1 || BucketsFor(BucketTarget+1) != 2 {
		t.Errorf("BucketsFor: %d %d %d", BucketsFor(0), BucketsFor(BucketTarget), BucketsFor(BucketTarget+1))
	}
}

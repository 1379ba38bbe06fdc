package calllist_test

import (
	"context"
	"testing"

	"warngate/channels"
	"warngate/channels/calllist"
	"warngate/warning"
)

func TestAssign(t *testing.T) {
	b := &channels.Batch{Channel: warning.CallList, Warning: &warning.Warning{ID: "w"}, Recipients: []warning.Recipient{
		{ID: "h1", Address: "o5", Audience: warning.Households}, {ID: "h2", Audience: warning.Households}}}
	rc, retry, err := calllist.Assigner{}.Notify(context.Background(), b)
	if err != nil || retry || len(rc) != 2 || rc[0].State != warning.Sent || rc[1].State != warning.Failed {
		t.Fatalf("receipts %+v retry %v err %v", rc, retry, err)
	}
}

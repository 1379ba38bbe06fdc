package cloudsms

import (
	"fmt"
	"testing"
)

func TestChunksNeverRepeatANumber(t *testing.T) {
	got := Chunks([]string{"a", "b", "a", "c", "a", "d"}, 3)
	if fmt.Sprint(got) != "[[0 1 3] [2 5] [4]]" {
		t.Errorf("chunks %v", got)
	}
}

package main

import (
	"testing"

	"warngate/region"
)

// The benches' city-wide warnings name the city: the API refuses the
// province above it as outside the gateway's city.
func TestBenchCityCode(t *testing.T) {
	if got := cityCode(region.Kunming()); got != "530100000000" {
		t.Fatalf("city-wide warnings name %s, want the city 530100000000", got)
	}
}

package policy

import (
	"warngate/region"
)

// Superior returns who answers for an official who does not confirm: a
// village's officials answer to their township's duty officer, the duty
// officer to the township's responsible leader, the leader to the county's
// duty officer, and that officer to the county leader. It reports false at
// the top of the chain or when the roster has nobody in the role.
func Superior(tree *region.Tree, roster region.Roster, p region.Person) (region.Person, bool) {
	var level region.Level
	var role region.Role
	switch p.Role {
	case region.VillageOfficer, region.InfoOfficer, region.GridWorker:
		level, role = region.Township, region.TownshipDuty
	case region.TownshipDuty:
		level, role = region.Township, region.TownshipLeader
	case region.TownshipLeader:
		level, role = region.County, region.CountyDuty
	case region.CountyDuty:
		level, role = region.County, region.CountyLeader
	default:
		return region.Person{}, false
	}
	d, ok := tree.Ancestor(p.Division, level)
	if !ok {
		return region.Person{}, false
	}
	var found region.Person
	roster.People(d.Code, func(x region.Person) bool {
		if x.Role == role {
			found = x
			return false
		}
		return true
	})
	return found, found.ID != ""
}

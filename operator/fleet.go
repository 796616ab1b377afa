package operator

import (
	"context"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
)

// ThingInfo is a thing of the registry.
type ThingInfo struct {
	Name       string            `json:"thingName"`
	ARN        string            `json:"thingArn"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// ListThings lists every thing, by name.
func (c *Client) ListThings(ctx context.Context) ([]ThingInfo, error) {
	var out []ThingInfo
	var token *string
	for {
		page, err := c.IoT.ListThings(ctx, &iot.ListThingsInput{NextToken: token, MaxResults: aws.Int32(250)})
		if err != nil {
			return nil, explain("listing things", err)
		}
		for _, t := range page.Things {
			out = append(out, ThingInfo{Name: aws.ToString(t.ThingName), ARN: aws.ToString(t.ThingArn), Attributes: t.Attributes})
		}
		if token = page.NextToken; token == nil {
			break
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DescribeThing reads one thing.
func (c *Client) DescribeThing(ctx context.Context, name string) (ThingInfo, error) {
	out, err := c.IoT.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String(name)})
	if err != nil {
		return ThingInfo{}, explain("thing "+name, err)
	}
	return ThingInfo{Name: aws.ToString(out.ThingName), ARN: aws.ToString(out.ThingArn), Attributes: out.Attributes}, nil
}

// ListThingGroups lists the names of every thing group, sorted.
func (c *Client) ListThingGroups(ctx context.Context) ([]string, error) {
	var out []string
	var token *string
	for {
		page, err := c.IoT.ListThingGroups(ctx, &iot.ListThingGroupsInput{NextToken: token, MaxResults: aws.Int32(250)})
		if err != nil {
			return nil, explain("listing thing groups", err)
		}
		for _, g := range page.ThingGroups {
			out = append(out, aws.ToString(g.GroupName))
		}
		if token = page.NextToken; token == nil {
			break
		}
	}
	sort.Strings(out)
	return out, nil
}

// ThingsInGroup lists the things of a group (and of its descendants with
// recursive), sorted.
func (c *Client) ThingsInGroup(ctx context.Context, group string, recursive bool) ([]string, error) {
	var out []string
	var token *string
	for {
		page, err := c.IoT.ListThingsInThingGroup(ctx, &iot.ListThingsInThingGroupInput{ThingGroupName: aws.String(group),
			Recursive: recursive, NextToken: token, MaxResults: aws.Int32(250)})
		if err != nil {
			return nil, explain("things of group "+group, err)
		}
		out = append(out, page.Things...)
		if token = page.NextToken; token == nil {
			break
		}
	}
	sort.Strings(out)
	return out, nil
}

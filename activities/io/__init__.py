"""What tasks read from and write to the outside: fetched inputs, stored results, Payload CMS, webhooks."""

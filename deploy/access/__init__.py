"""The one access model: privileges, memberships, owners and role settings, declared against held."""

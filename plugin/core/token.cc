// Written by the component's owner.
